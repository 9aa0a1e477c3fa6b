"""Checks of the run-level keys, so that bad input stops with the key, the value and what is
allowed, before anything is built."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """A configuration value is not allowed; the message names the key."""


def _check(cfg: DictConfig, key: str, ok, allowed: str) -> None:
    value = OmegaConf.select(cfg, key, default=None)
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
    ("device", lambda v: v in ("cpu", "cuda", "auto"), "one of cpu, cuda, auto"),
    ("dtype", lambda v: v in ("float64", "float32"), "one of float64, float32"),
    ("model.width", _positive_int, "a positive integer"),
    ("model.depth", _positive_int, "a positive integer"),
    ("model.omega_0", _positive, "a positive number"),
    ("optim.lr", _positive, "a positive number"),
    ("optim.lr_unknown", _positive, "a positive number"),
    ("optim.decay_steps", _positive_int, "a positive integer"),
    ("optim.decay_rate", lambda v: _positive(v) and v <= 1, "a number in (0, 1]"),
    ("optim.lbfgs_steps", lambda v: isinstance(v, int) and v >= 0, "a non-negative integer"),
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
