"""Pretokenize entry point: ``python pretokenize.py [overrides]`` (Hydra; configs/pretokenize.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="pretokenize")
def main(cfg: DictConfig) -> None:
    from fsq_repro.pipeline.entry import run_pretokenize

    run_pretokenize(cfg)


if __name__ == "__main__":
    main()
