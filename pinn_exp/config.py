"""Checks of the run-level keys, so that bad input stops with the key, the value and what is
allowed, before anything is built.

:func:`validate` checks values of a composed config; :func:`writable_folder` checks a folder the
run needs; :func:`check_command_line` composes a command line the way ``train.py`` will and turns
every rejection (Hydra's included) into one :class:`ConfigError` line.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration value is not allowed; the message names the key."""


class PathError(ConfigError):
    """A folder the run needs cannot be created or written; the message names the key."""


def one_line(text: object) -> str:
    """``text``'s non-empty lines joined with "; " (Hydra's search-path listing dropped)."""
    lines = []
    for line in str(text).splitlines():
        if line.strip().startswith("Config search path"):
            break
        if line.strip():
            lines.append(line.strip())
    return "; ".join(lines)


def _check(cfg: DictConfig, key: str, ok, allowed: str) -> None:
    try:
        value = OmegaConf.select(cfg, key, default=None)
    except OmegaConfBaseException as err:  # e.g. an interpolation that does not resolve
        raise ConfigError(f"{key} is not allowed: {one_line(err)}") from None
    if value is None:
        return
    if not ok(value):
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _positive(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v > 0


def _non_negative(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v >= 0


CHECKS = [
    ("seed", lambda v: isinstance(v, int) and v >= 0, "a non-negative integer"),
    ("steps", _positive_int, "a positive integer"),
    ("log_every", _positive_int, "a positive integer"),
    ("eval_every", _positive_int, "a positive integer"),
    ("checkpoint_every", _positive_int, "a positive integer"),
    ("time_budget_s", _positive, "a positive number of seconds, or null for no budget"),
    ("device", lambda v: v in ("cpu", "cuda", "auto"), "one of cpu, cuda, auto"),
    ("dtype", lambda v: v in ("float64", "float32"), "one of float64, float32"),
    ("model.width", _positive_int, "a positive integer"),
    ("model.depth", _positive_int, "a positive integer"),
    ("model.omega_0", _positive, "a positive number"),
    ("optim.lr", _positive, "a positive number"),
    ("optim.lr_unknown", _positive, "a positive number"),
    ("optim.decay_steps", _positive_int, "a positive integer"),
    ("optim.decay_rate", lambda v: _positive(v) and v <= 1, "a number in (0, 1]"),
    ("optim.adam_steps", lambda v: isinstance(v, int) and v >= 0, "a non-negative integer"),
    ("sampler.n_points", _positive_int, "a positive integer"),
    ("sampler.interval", _positive_int, "a positive integer"),
    ("sampler.n_candidates", _positive_int, "a positive integer"),
    ("noise.level", _non_negative, "a non-negative number (0.1 means 10 %)"),
    ("balancer.alpha", lambda v: _positive(v) and v < 1, "a number in (0, 1)"),
    ("balancer.update_every", _positive_int, "a positive integer"),
]


def validate(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first key whose value is not allowed."""
    for key, ok, allowed in CHECKS:
        _check(cfg, key, ok, allowed)


# --- folders -------------------------------------------------------------------------------------
_WRITABLE = "a writable folder is required"


def writable_folder(key: str, value: object, *, create: bool = True) -> Path:
    """The absolute folder ``value`` (the value of ``key``), once the run can write there.

    ``create=True`` creates it and its parents if missing. ``create=False`` creates nothing: it
    checks that the folder, or else its nearest existing parent, takes a new entry. Writing is
    probed by making and removing a temporary folder, since access bits say nothing for root or
    on /proc. Raises :class:`PathError` naming the key, the value and the reason.
    """
    path = Path(os.path.abspath(Path(str(value)).expanduser()))  # as Hydra makes its folders

    def fail(why: str) -> PathError:
        return PathError(f"{key}={str(value)!r} is not allowed: {why}; {_WRITABLE}")

    probe = path
    if create:
        if path.exists() and not path.is_dir():
            raise fail("it exists and is not a folder")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise fail(f"cannot create it ({err.strerror or err})") from None
    else:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise fail("it exists and is not a folder" if probe == path else f"{probe} is a file")
    try:
        Path(tempfile.mkdtemp(prefix=".write-check-", dir=probe)).rmdir()
    except OSError as err:
        raise fail(f"cannot write in {probe} ({err.strerror or err})") from None
    return path


# --- the command line, checked before Hydra creates anything ------------------------------------
@dataclass(frozen=True)
class CommandLine:
    """What :func:`check_command_line` found out about the single run's Hydra folder.

    ``run_dir`` is None for a multirun. ``created_root`` is the topmost folder of ``run_dir``'s
    path that did not exist yet (``run_dir`` itself, one of its parents, or None if it existed):
    what a rejected run may remove again. ``pin`` is the override ``hydra.run.dir=<run_dir>``
    to append to the command line, so that Hydra makes exactly the folder checked here (its
    default name holds the time, which may have moved on by a second); None if the path cannot
    be written as an override.
    """

    run_dir: Path | None = None
    existed: bool = False
    created_root: Path | None = None
    pin: str | None = None


def _options(conf_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _option_keys(conf_dir: Path, group: str, option: str) -> list[str]:
    node = OmegaConf.load(conf_dir / group / f"{option}.yaml")
    return [str(k) for k in node] if isinstance(node, DictConfig) else []


def override_key(line: str) -> str:
    """The key of a command-line override: ``+a.b=1`` -> ``a.b``, ``model@x=mlp`` -> ``model``."""
    return line.lstrip("~+").split("=", 1)[0].split("@", 1)[0]


def _missing_option(err: Exception, conf_dir: Path) -> str | None:
    """``group='name' is not allowed: one of ...`` for Hydra's "Could not find" error."""
    text = str(err)
    found = re.search(r"Could not find '([^']+)'", text)
    if not found or "/" not in found.group(1):
        return None
    group, _, name = found.group(1).rpartition("/")
    listed = text.split("Available options", 1)[1] if "Available options" in text else ""
    listed = listed.split("Config search path", 1)[0]
    options = sorted({*_options(conf_dir, group), *re.findall(r"^\t(\S+)\s*$", listed, re.M)})
    allowed = f"one of {', '.join(options)}" if options else f"{group} has no options"
    return f"{group}={name!r} is not allowed: {allowed}"


def _unknown_key(err: Exception, lines: list[str], conf_dir: Path, compose) -> str | None:
    """``key=value is not allowed: <node> has no key ...`` for Hydra's "Could not override"."""
    found = re.match(r"Could not override '([^']+)'", str(err))
    if not found:
        return None
    key = found.group(1)
    line = next((x for x in lines if override_key(x) == key), None)
    if line is None:  # not one of ours (a preset's content, say): Hydra's message says it
        return None
    try:
        base = compose([x for x in lines if x != line])
    except ConfigError:
        return None
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(base, parent) if parent else base
    if not isinstance(node, DictConfig):
        return f"{line} is not allowed: {parent} is a value, not a group of keys"
    keys = [str(k) for k in node if not str(k).startswith("_") and k != "hydra"]
    group = parent if parent and (conf_dir / parent).is_dir() else ""
    label = f"{group}={base.hydra.runtime.choices.get(group)}" if group else parent or "the config"
    allowed = f"its keys: {', '.join(keys) or 'none'}"
    having = []
    if group:  # the group's other options that do take this key
        having = [o for o in _options(conf_dir, group) if leaf in _option_keys(conf_dir, group, o)]
    if having:
        allowed += f"; {group}={', '.join(having)} " + ("has it" if len(having) == 1 else "have it")
    return f"{line} is not allowed: {label} has no key {leaf!r} ({allowed})"


def _jobs(base: DictConfig, task: list[str], parser) -> list[list[str]]:
    """The override lists of a multirun's jobs, as Hydra's basic sweeper makes them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    sweeper = base.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return [task]  # another sweeper chooses its jobs itself: check the base only
    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    batches = BasicSweeper.split_arguments(parser.parse_overrides(params + task), None)
    return [job for batch in batches for job in batch]


def check_command_line(
    conf_dir: str | Path,
    overrides: Sequence[str],
    *,
    multirun: bool = False,
    config_name: str = "config",
) -> CommandLine:
    """Compose ``overrides`` as ``train.py`` will and check them before anything is created.

    A single run is composed and its values checked (for ``resume=`` the saved config with the
    changes a resumed run allows); ``hydra.run.dir`` must be creatable and ``data_dir`` writable
    (it is created). A multirun's jobs are each composed and their values checked;
    ``hydra.sweep.dir`` must be creatable (each job's folders are checked when it runs, so one
    job's missing folder fails that job only). Every rejection, Hydra's composition errors
    included, is raised as one :class:`ConfigError` line naming the key, the value and what is
    allowed. Creates nothing but ``data_dir``.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, MissingConfigException

    conf_dir, overrides = Path(conf_dir).resolve(), list(overrides)

    def composed(lines: list[str]) -> DictConfig:
        try:
            return compose(config_name, overrides=list(lines), return_hydra_config=True)
        except (HydraException, OmegaConfBaseException) as err:
            message = None
            if isinstance(err, MissingConfigException):
                message = _missing_option(err, conf_dir)
            message = message or _unknown_key(err, lines, conf_dir, composed)
            if message is None:
                message = one_line(err)
                if err.__cause__ is not None:
                    message += f"; {one_line(err.__cause__)}"
            raise ConfigError(message) from None

    previous = HydraConfig.instance().cfg
    try:
        with initialize_config_dir(str(conf_dir), version_base="1.3", job_name="train"):
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            parsed = []
            for line in overrides:
                try:
                    parsed.extend(parser.parse_overrides([line]))
                except HydraException as err:
                    raise ConfigError(f"{line!r} is not allowed: {one_line(err)}") from None
            if not multirun:
                cfg = composed(overrides)
                HydraConfig.instance().set_config(cfg)
                return _check_run(cfg, overrides)
            base = composed([p.input_line for p in parsed if not p.is_sweep_override()])
            HydraConfig.instance().set_config(base)
            writable_folder("hydra.sweep.dir", base.hydra.sweep.dir, create=False)
            hydra_lines = [p.input_line for p in parsed if p.is_hydra_override()]
            task = [p.input_line for p in parsed if not p.is_hydra_override()]
            for job in _jobs(base, task, parser):
                validate(composed(hydra_lines + list(job)))
            return CommandLine()
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(one_line(err)) from None
    finally:
        HydraConfig.instance().cfg = previous


def _check_run(cfg: DictConfig, overrides: list[str]) -> CommandLine:
    from pinn_exp.rundir import resume_config

    if cfg.get("resume"):
        run_cfg = resume_config(cfg, overrides)[0]
    else:
        validate(cfg)
        run_cfg = cfg
    run_dir = writable_folder("hydra.run.dir", cfg.hydra.run.dir, create=False)
    writable_folder("data_dir", run_cfg.data_dir)
    created_root = None
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            break
        created_root = folder
    return CommandLine(run_dir, created_root is None, created_root, _pin("hydra.run.dir", run_dir))


def _pin(key: str, path: Path) -> str | None:
    """``key=<path>`` as an override whose value Hydra reads back as exactly ``path``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    text = str(path)
    if "${" in text:
        return None
    for value in (text, "'" + text.replace("'", "\\'") + "'"):
        try:
            if OverridesParser.create().parse_override(f"{key}={value}").value() == text:
                return f"{key}={value}"
        except HydraException:  # not an override in this form: try the next one
            continue
    return None
