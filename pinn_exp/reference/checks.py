"""Argument checks shared by the reference solvers: the message names the argument, the value
and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_float(name: str, value: object, allowed: str, ok: Callable[[float], bool]) -> float:
    try:
        as_float = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        as_float = math.nan
    if isinstance(value, bool) or not math.isfinite(as_float) or not ok(as_float):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return as_float
