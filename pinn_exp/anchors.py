"""Parametrisations ("anchors") of unknown physical parameters of inverse problems.

An anchor holds one trainable scalar ``raw`` (float64; its own optimizer parameter group) and
maps it to the physical value.  :class:`SoftplusAnchor` keeps the value positive,

.. math:: \\lambda = \\beta \\, \\mathrm{softplus}(\\kappa), \\qquad
   \\mathrm{softplus}(\\kappa) = \\log(1 + e^{\\kappa}),

(softplus: Dugas, Bengio, Belisle, Nadeau, Garcia, "Incorporating second-order functional
knowledge for better option pricing", NeurIPS 2001); :class:`ExpAnchor` trains the logarithm
(the standard log-parameterisation of a positive parameter),

.. math:: \\lambda = \\beta \\, e^{\\kappa},

so equal steps in ``raw`` are equal relative steps of the value; :class:`IdentityAnchor` trains
the value itself, as Raissi et al. did for their inverse problems (J. Comput. Phys. 378 (2019)
686-707).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod

import torch
from torch import Tensor, nn

__all__ = [
    "Anchor",
    "ExpAnchor",
    "IdentityAnchor",
    "SoftplusAnchor",
    "inverse_softplus",
    "softplus",
]


def softplus(x: Tensor) -> Tensor:
    """``log(1 + exp(x))`` accurate to rounding for every float64 ``x``.

    ``torch.nn.functional.softplus`` returns ``x`` itself above its ``threshold`` (20), a
    relative error up to ~1e-10 there; ``logaddexp(x, 0)`` has neither that cut nor overflow,
    and its gradient ``sigmoid(x)`` is finite everywhere (0 far left, 1 far right).
    """
    return torch.logaddexp(x, torch.zeros_like(x))


def inverse_softplus(y: float) -> float:
    """``log(exp(y) - 1) = y + log(-expm1(-y))`` for ``y > 0``, without overflow or
    cancellation (``exp(y)`` overflows above ~709; ``log(expm1(y))`` loses digits for small
    ``y`` in the naive form)."""
    return y + math.log(-math.expm1(-y))


def _check_real(name: str, value: object, positive: bool) -> float:
    allowed = "a finite real number > 0" if positive else "a finite real number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


class Anchor(nn.Module, ABC):
    """A trainable physical parameter ``value() = f(raw)``.

    Parameters
    ----------
    initial:
        Initial guess of the physical value; ``raw`` is initialised so that ``value()``
        returns it.
    """

    def __init__(self, initial: float) -> None:
        super().__init__()
        self.initial = _check_real("initial", initial, positive=False)

    def _init_raw(self, raw: float) -> None:
        self.raw = nn.Parameter(torch.tensor(raw, dtype=torch.float64))

    @abstractmethod
    def value(self) -> Tensor:
        """The physical value, a float64 scalar differentiable with respect to ``raw``."""

    def forward(self) -> Tensor:
        return self.value()

    def extra_repr(self) -> str:
        return f"initial={self.initial!r}"


def _positive_ratio(anchor: Anchor, initial: float, beta: float) -> float:
    """Checks and stores ``initial`` and ``beta``; returns ``initial / beta`` (finite, > 0)."""
    anchor.initial = _check_real("initial", initial, positive=True)
    anchor.beta = _check_real("beta", beta, positive=True)
    ratio = anchor.initial / anchor.beta
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(
            f"initial / beta must be finite and > 0, got {initial!r} / {beta!r} = {ratio!r}"
        )
    return ratio


class SoftplusAnchor(Anchor):
    """Positive parameter ``value = beta * softplus(raw)``.

    ``raw`` starts at ``inverse_softplus(initial / beta)`` so ``value() == initial`` to rounding
    (relative error ~``max(1, |log(initial / beta)|) * 2.2e-16``: for tiny ratios the rounding of
    ``raw ~ log(initial / beta)`` is amplified by ``exp``).
    ``beta`` sets the scale: near ``raw ~ 0`` a unit step in ``raw`` moves the value by about
    ``beta / 2``, and for ``value >> beta`` the map is nearly linear with slope ``beta``.
    """

    def __init__(self, initial: float, beta: float = 1.0) -> None:
        super().__init__(initial)
        ratio = _positive_ratio(self, initial, beta)
        self._init_raw(inverse_softplus(ratio))

    def value(self) -> Tensor:
        return self.beta * softplus(self.raw)

    def extra_repr(self) -> str:
        return f"initial={self.initial!r}, beta={self.beta!r}"


class ExpAnchor(Anchor):
    """Positive parameter on a log scale, ``value = beta * exp(raw)`` (``anchor=log``).

    ``raw = log(value / beta)``: a step ``delta`` in ``raw`` multiplies the value by
    ``exp(delta)`` whatever its size, so an optimizer that moves ``raw`` by about its learning
    rate per step (Adam) moves the value by about that *fraction* of itself, and from 50 to 100
    takes as many steps as from 5 to 10; and ``d value / d raw = value``. ``raw`` starts at
    ``log(initial / beta)`` so ``value() == initial`` to rounding (relative error
    ~``max(1, |log(initial / beta)|) * 2.2e-16``, the rounding of ``raw`` amplified by
    ``exp``). ``beta`` only shifts ``raw`` (``raw = 0`` at ``value = beta``); unlike
    :class:`SoftplusAnchor` there is no linear regime for ``value >> beta``. Float64 limits
    ``raw`` to about [-745, 709.8]: beyond, ``exp`` underflows to 0 (with a zero gradient) or
    overflows to ``inf``.
    """

    def __init__(self, initial: float, beta: float = 1.0) -> None:
        super().__init__(initial)
        ratio = _positive_ratio(self, initial, beta)
        self._init_raw(math.log(ratio))

    def value(self) -> Tensor:
        return self.beta * torch.exp(self.raw)

    def extra_repr(self) -> str:
        return f"initial={self.initial!r}, beta={self.beta!r}"


class IdentityAnchor(Anchor):
    """Unconstrained parameter ``value = raw`` (``anchor=none``)."""

    def __init__(self, initial: float) -> None:
        super().__init__(initial)
        self._init_raw(self.initial)

    def value(self) -> Tensor:
        return self.raw
