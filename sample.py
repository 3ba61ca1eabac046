"""Sample entry point: ``python sample.py [overrides]`` (Hydra; configs/sample.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="sample")
def main(cfg: DictConfig) -> None:
    from fsq_repro.pipeline.entry import run_sample

    run_sample(cfg)


if __name__ == "__main__":
    main()
