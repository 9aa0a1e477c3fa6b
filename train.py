"""Entry point: ``python train.py [group=option ...] [key=value ...]`` (Hydra)."""

import json
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from omegaconf import DictConfig

from pinn_exp.config import ConfigError
from pinn_exp.run import train


def _is_bad_input(err: Exception) -> bool:
    """A rejected config value: ours, or a constructor's ValueError that Hydra wrapped."""
    if isinstance(err, ConfigError):
        return True
    return isinstance(err, InstantiationException) and isinstance(err.__cause__, ValueError)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    try:
        metrics = train(cfg)
    except Exception as err:
        if _is_bad_input(err):
            # One line naming the key and what is allowed, and a non-zero exit.
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            raise
        # In a sweep one crashing job must not stop the others: record it and go on.
        traceback.print_exc()
        out = Path(HydraConfig.get().runtime.output_dir) / "metrics.json"
        out.write_text(json.dumps({"status": "failed", "message": repr(err)}, indent=2) + "\n")
        return float("nan")
    return metrics.get("rel_l2", float("nan"))


if __name__ == "__main__":
    main()
