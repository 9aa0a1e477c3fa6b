"""The run folder: where a run writes, the config a resumed run continues with, and the removal
of a folder that Hydra made for a run that never started."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from pinn_exp.config import ConfigError, override_key, validate, writable_folder

CONFIG_FILE = "config.yaml"

# The keys a resumed run may change, and how; every other key is the saved run's. `resume` and
# Hydra's own keys (`hydra.*`, `hydra/...`) may be given too.
RESUME_KEYS = {
    "steps": "steps (to extend the run: at least the saved value)",
    "time_budget_s": "time_budget_s (to extend a run its budget stopped)",
    "progress": "progress",
    "data_dir": "data_dir",
}


def _is_hydra(key: str) -> bool:
    return key == "hydra" or key.startswith(("hydra.", "hydra/"))


def resume_dir(cfg: DictConfig) -> Path | None:
    """The folder ``resume=`` names (absolute), or None when the run starts afresh."""
    return Path(str(cfg.resume)).expanduser().resolve() if cfg.get("resume") else None


def resume_config(
    cfg: DictConfig, overrides: Sequence[str] = ()
) -> tuple[DictConfig, Path, dict[str, object]]:
    """The saved config of the run ``cfg.resume`` names, with the changes ``overrides`` allow.

    Only the keys in :data:`RESUME_KEYS` may change (their new values are read from ``cfg``, the
    composed config); ``steps`` only upwards. Any other override is refused, naming it.

    Returns the config to continue with, the run folder and the changes made (key -> value).
    Writes nothing.
    """
    run_dir = resume_dir(cfg)
    saved_file = run_dir / CONFIG_FILE
    if not saved_file.is_file():
        raise ConfigError(f"resume={cfg.resume!r} is not allowed: {saved_file} does not exist")
    keys = {override_key(o): o for o in overrides}
    refused = [
        o for k, o in keys.items() if k not in RESUME_KEYS and k != "resume" and not _is_hydra(k)
    ]
    if refused:
        raise ConfigError(
            f"{', '.join(refused)} cannot change when resuming {run_dir}: a resumed run keeps "
            f"its saved config; allowed on resume: {', '.join(RESUME_KEYS.values())}"
        )
    saved = OmegaConf.load(saved_file)
    changes = {k: cfg[k] for k in RESUME_KEYS if k in keys and cfg[k] != saved.get(k)}
    merged = saved.copy()
    for key, value in changes.items():
        merged[key] = value
    validate(merged)
    if "steps" in changes and merged.steps < saved.steps:
        raise ConfigError(
            f"steps={merged.steps!r} is not allowed when resuming {run_dir}: at least "
            f"{saved.steps} (the saved value; a resumed run can only be extended)"
        )
    return merged, run_dir, changes


def _save_atomic(cfg: DictConfig, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        OmegaConf.save(cfg, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def prepare(cfg: DictConfig, overrides: Sequence[str] = ()) -> tuple[DictConfig, Path, bool]:
    """Check the config and resolve the output folder; a resumed run takes its own saved config.

    ``overrides`` are the command line's overrides: on resume only :data:`RESUME_KEYS` may
    change, and the changes are written to the saved ``config.yaml`` (atomically), so that the
    next resumption sees them. Values are checked and ``data_dir`` is made writable before any
    file is written.

    Returns the config, the run folder and whether this is a resumption.
    """
    if cfg.get("resume"):
        resumed, run_dir, changes = resume_config(cfg, overrides)
        writable_folder("data_dir", resumed.data_dir)
        if changes:
            _save_atomic(resumed, run_dir / CONFIG_FILE)
        return resumed, run_dir, True
    validate(cfg)
    writable_folder("data_dir", cfg.data_dir)
    run_dir = writable_folder("output_dir", cfg.output_dir)
    resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    resolved.output_dir = str(run_dir)
    OmegaConf.save(resolved, run_dir / CONFIG_FILE)
    return resolved, run_dir, False


# --- a Hydra folder of a run that never started ------------------------------------------------
def hydra_files(output_subdir: str | None, log_name: str) -> set[str]:
    """The paths (relative, POSIX) that Hydra writes in a run folder before the run starts."""
    files = {log_name}
    if output_subdir:
        files |= {f"{output_subdir}/{n}" for n in ("config.yaml", "hydra.yaml", "overrides.yaml")}
    return files


def holds_only(folder: Path, allowed: Iterable[str]) -> bool:
    """Whether every file under ``folder`` is one of ``allowed`` (relative POSIX paths)."""
    allowed = set(allowed)
    dirs = {str(Path(a).parent.as_posix()) for a in allowed}
    for path in folder.rglob("*"):
        rel = path.relative_to(folder).as_posix()
        if not (rel in dirs if path.is_dir() and not path.is_symlink() else rel in allowed):
            return False
    return True


def is_fresh(folder: Path, files: set[str], log_name: str) -> bool:
    """Whether ``folder`` holds only Hydra's files of a run that has not started (empty log)."""
    log = folder / log_name
    empty_log = not log.exists() or log.stat().st_size == 0
    return folder.is_dir() and holds_only(folder, files) and empty_log


def remove_folder(folder: Path, allowed: Iterable[str], up_to: Path | None = None) -> bool:
    """Remove ``folder`` if it holds nothing but ``allowed``; then its parents that are empty
    now, up to and including ``up_to`` (the topmost one the run created). Returns whether
    ``folder`` was removed."""
    if not folder.is_dir() or not holds_only(folder, allowed):
        return False
    shutil.rmtree(folder)
    if up_to is not None and folder.is_relative_to(up_to):
        for parent in folder.parents:
            if not parent.is_relative_to(up_to):
                break
            try:
                parent.rmdir()  # only if empty
            except OSError:
                break
    return True
