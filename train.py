"""Train entry point: ``python train.py experiment=<name> [overrides]`` (Hydra; configs/train.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
    from fsq_repro.pipeline.entry import run_train

    run_train(cfg)


if __name__ == "__main__":
    main()
