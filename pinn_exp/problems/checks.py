"""Checks of the ``pde.*`` options shared by the Navier-Stokes problems: the message names the
key, the value and what is allowed."""

from __future__ import annotations

import math

__all__ = ["positive_float", "positive_int"]


def positive_float(name: str, value: object, minimum: float = 0.0) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and value > minimum):
        raise ValueError(f"pde.{name} must be a finite number > {minimum:g}, got {value!r}")
    return float(value)


def positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"pde.{name} must be a positive integer, got {value!r}")
    return value
