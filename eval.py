"""Eval entry point: ``python eval.py [overrides]`` (Hydra; configs/eval.yaml)."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    from fsq_repro.pipeline.entry import run_eval

    run_eval(cfg)


if __name__ == "__main__":
    main()
