"""The run folder: where a run writes, and the config a resumed run continues with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pinn_exp.config import ConfigError

CONFIG_FILE = "config.yaml"


def prepare(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[DictConfig, Path, bool]:
    """Resolve the config and the output folder; a resumed run takes its own saved config.

    ``overrides`` are the command line's overrides (checked on resume).

    Returns the config, the run folder and whether this is a resumption.
    """
    if cfg.get("resume"):
        run_dir = Path(cfg.resume).expanduser().resolve()
        saved = run_dir / CONFIG_FILE
        if not saved.is_file():
            raise ConfigError(f"resume={cfg.resume!r} is not allowed: {saved} does not exist")
        return OmegaConf.load(saved), run_dir, True
    run_dir = Path(cfg.output_dir).expanduser().resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    resolved.output_dir = str(run_dir)
    OmegaConf.save(resolved, run_dir / CONFIG_FILE)
    return resolved, run_dir, False
