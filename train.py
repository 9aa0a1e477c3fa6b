"""Entry point: ``python train.py [group=option ...] [key=value ...]`` (Hydra)."""

import sys

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig

from pinn_exp.config import ConfigError
from pinn_exp.run import train


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        metrics = train(cfg)
    except (ConfigError, InstantiationException) as err:
        # One line naming the key and what is allowed, and a non-zero exit.
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    return metrics.get("rel_l2", float("nan"))


if __name__ == "__main__":
    main()
