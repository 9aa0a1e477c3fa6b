"""Truncated Taylor jets up to third order: multi-indices and Faa di Bruno's chain rule.

A jet holds every partial derivative of a quantity up to some order, keyed by the sorted axes
it differentiates along (:data:`MultiIndex`). :func:`chain_rule` gives the jet of ``sigma(z)``
from ``z``'s jet and ``sigma``'s first three derivatives (Faa di Bruno's formula), and
:func:`activation3` those derivatives for the network activations (sin, tanh). The stacked
streams of :mod:`pinn_exp.derivatives` push jets through a network with them; the exact boundary
conditions of :mod:`pinn_exp.problems.cylinder_constraints` build the jets of their distance
functions with them.
"""

from __future__ import annotations

from itertools import chain, combinations_with_replacement

import torch
from torch import Tensor

__all__ = ["MultiIndex", "activation3", "chain_rule", "multi_indices"]

MultiIndex = tuple[int, ...]
"""A partial derivative as the sorted axes it differentiates along: ``()`` is the value,
``(0,)`` is d/dx_0, ``(0, 1)`` is d2/dx_0 dx_1, ``(1, 1, 1)`` is d3/dx_1^3."""


def multi_indices(d: int, order: int) -> list[MultiIndex]:
    """Every sorted multi-index of length 0..order over ``d`` axes, value first."""
    return list(
        chain.from_iterable(combinations_with_replacement(range(d), k) for k in range(order + 1))
    )


def activation3(z: Tensor, kind: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sigma(z) and its first three derivatives."""
    if kind == "sin":
        s, c = torch.sin(z), torch.cos(z)
        return s, c, -s, -c
    t = torch.tanh(z)
    dt = 1 - t * t
    return t, dt, -2 * t * dt, dt * (4 * t * t - 2 * dt)


def chain_rule(z: dict[MultiIndex, Tensor], sigma: tuple[Tensor, ...], index: MultiIndex) -> Tensor:
    """Faa di Bruno's formula for ``d^index sigma(z)`` up to third order; missing entries of
    ``z`` are zero (the first layer's input has no second or third derivatives)."""
    _, a1, a2, a3 = sigma

    def part(*idx: MultiIndex) -> Tensor | None:
        parts = [z.get(tuple(sorted(i))) for i in idx]
        if any(p is None for p in parts):
            return None
        out = parts[0]
        for p in parts[1:]:
            out = out * p
        return out

    if len(index) == 1:
        return a1 * z[index] if index in z else torch.zeros_like(a1)
    if len(index) == 2:
        i, j = index
        terms = [(a2, part((i,), (j,))), (a1, part((i, j)))]
    else:
        i, j, k = index
        pairs = [part((i, j), (k,)), part((i, k), (j,)), part((j, k), (i,))]
        pairs = [p for p in pairs if p is not None]
        terms = [(a3, part((i,), (j,), (k,))), (a1, part((i, j, k)))]
        if pairs:
            terms.append((a2, sum(pairs[1:], pairs[0])))
    out = None
    for factor, value in terms:
        if value is not None:
            out = factor * value if out is None else out + factor * value
    return out if out is not None else torch.zeros_like(a1)
