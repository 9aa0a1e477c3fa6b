"""Input derivatives of SIREN and MLP outputs: stacked forward-mode streams, and nested autograd.

A PINN residual needs ``y``, ``dy/dx_k`` and ``d2y/dx_k^2`` of every output. Nested autograd
gets them with one backward pass per output for the gradient plus one per output and axis for
the pure second derivatives (7 for Navier-Stokes), each building a graph that training then
differentiates again. Here the value, first and pure second derivative "streams" are pushed
forward together instead (forward-mode Taylor propagation; cf. the "forward Laplacian" of Li
et al. 2024, "A computational framework for neural network-based variational Monte Carlo with
Forward Laplacian", Nat. Mach. Intell. 6:209-219). For a layer ``a = sigma(z)``,
``z = W h + b``:

.. math::
    \\partial_k z = W \\partial_k h, \\quad \\partial_k^2 z = W \\partial_k^2 h, \\qquad
    \\partial_k a = \\sigma'(z) \\partial_k z, \\quad
    \\partial_k^2 a = \\sigma''(z) (\\partial_k z)^2 + \\sigma'(z) \\partial_k^2 z,

so each layer costs one matrix product on the streams stacked along the batch axis, and the
whole thing is a plain forward graph: one ordinary backward trains through it, and
``torch.compile`` can fuse it (it cannot compile double backward).

Inputs are the problem's features ``f = A x + c`` (an affine map of the coordinates ``x`` in
which derivatives are wanted), so ``df/dx_k = A[:, k]`` is constant and ``d2f/dx_k^2 = 0``;
``jac`` is ``A`` (F, d), or its diagonal (F,) for a per-axis scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain, combinations_with_replacement

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pinn_exp.models import MLP, SIREN, SineLayer

__all__ = [
    "multi_indices",
    "nested_autograd",
    "nested_partials",
    "supports_stacked",
    "taylor_partials",
    "value_and_derivatives",
]

Derivatives = tuple[Tensor, Tensor, Tensor | None]
"""``(y (n, out), dy (n, d, out), d2y (n, d, out) or None)``: value, ``dy/dx_k`` and the pure
second derivatives ``d2y/dx_k^2``."""


def _jac_matrix(jac: Tensor, n_features: int) -> Tensor:
    if jac.ndim == 1:
        jac = torch.diag(jac)
    if jac.ndim != 2 or jac.shape[0] != n_features:
        raise ValueError(
            f"jac must have shape ({n_features},) or ({n_features}, d), got {tuple(jac.shape)}"
        )
    return jac


def _layers(model: nn.Module) -> tuple[list[tuple[nn.Linear, float, str]], nn.Linear]:
    """``[(linear, omega, activation), ...]`` and the linear head of a SIREN or MLP."""
    if isinstance(model, SIREN) and all(isinstance(m, SineLayer) for m in model.body):
        return [(m.linear, float(m.omega_0), "sin") for m in model.body], model.head
    if isinstance(model, MLP):
        return [(m, 1.0, "tanh") for m in model.hidden], model.head
    raise TypeError(
        f"stacked derivatives support pinn_exp.models.SIREN and MLP, got {type(model).__name__}; "
        f"use nested_autograd"
    )


def supports_stacked(model: nn.Module) -> bool:
    try:
        _layers(model)
    except TypeError:
        return False
    return True


def _activation(z: Tensor, kind: str) -> tuple[Tensor, Tensor, Tensor]:
    """sigma(z), sigma'(z), sigma''(z)."""
    if kind == "sin":
        s = torch.sin(z)
        return s, torch.cos(z), -s
    t = torch.tanh(z)
    dt = 1 - t * t
    return t, dt, -2 * t * dt


def value_and_derivatives(
    model: nn.Module, features: Tensor, jac: Tensor, order: int = 2
) -> Derivatives:
    """Outputs and their input derivatives by stacked forward-mode streams.

    Args:
        model: a :class:`~pinn_exp.models.SIREN` or :class:`~pinn_exp.models.MLP`.
        features: network inputs (n, F).
        jac: ``d features / d x``, (F, d), or its diagonal (F,).
        order: 1 for value and gradient only, 2 adds the pure second derivatives.

    Returns:
        ``(y, dy, d2y)``, see :data:`Derivatives`; ``d2y`` is None for ``order=1``.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    layers, head = _layers(model)
    jac = _jac_matrix(jac, features.shape[1]).to(features)
    d = jac.shape[1]

    # First layer: the derivative streams of the input are constant (columns of jac) and its
    # second derivatives vanish, so they cost a (w, F) x (F, d) product, not a batch product.
    linear, omega, kind = layers[0]
    z = omega * F.linear(features, linear.weight, linear.bias)
    dz = (omega * linear.weight @ jac).T.unsqueeze(1)  # (d, 1, w), broadcast over the batch
    a, a1, a2 = _activation(z, kind)
    h, dh = a, a1 * dz
    d2h = a2 * dz * dz if order == 2 else None

    for linear, omega, kind in [*layers[1:], (head, 1.0, "")]:
        # One matrix product for all 1 + d (+ d) streams; the bias enters the value only.
        streams = torch.cat([h.unsqueeze(0), dh] + ([d2h] if order == 2 else []))
        out = torch.matmul(streams, (omega * linear.weight).T)
        z, dz = out[0] + omega * linear.bias, out[1 : 1 + d]
        if not kind:  # the linear head
            h, dh = z, dz
            d2h = out[1 + d :] if order == 2 else None
            break
        a, a1, a2 = _activation(z, kind)
        h, dh = a, a1 * dz
        if order == 2:
            d2h = a2 * dz * dz + a1 * out[1 + d :]

    # Streams are (d, n, out); the problem-facing layout is (n, d, out).
    return h, dh.transpose(0, 1), None if d2h is None else d2h.transpose(0, 1)


def nested_autograd(
    model: nn.Module,
    features: Tensor,
    jac: Tensor,
    order: int = 2,
    second: Sequence[int] | None = None,
) -> Derivatives:
    """The same quantities by nested reverse-mode autograd, for any model (the reference).

    ``second`` lists the outputs whose second derivatives are computed (default: all); the
    others are NaN in ``d2y``, so that using them by mistake cannot go unnoticed. Each
    derivative costs one backward pass, and the graph is kept for training through it.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    jac = _jac_matrix(jac, features.shape[1]).to(features)
    n, d = features.shape[0], jac.shape[1]
    # A zero displacement in x-coordinates: d features / d shift = jac, and the features keep
    # their values, so derivatives w.r.t. the shift are derivatives w.r.t. x.
    shift = torch.zeros(n, d, dtype=features.dtype, device=features.device, requires_grad=True)
    y = model(features + shift @ jac.T)
    ones = torch.ones_like(y[:, 0])

    def grad(out: Tensor) -> Tensor:
        (g,) = torch.autograd.grad(out, shift, ones, create_graph=True)
        return g

    dy = torch.stack([grad(y[:, j]) for j in range(y.shape[1])], dim=2)
    if order == 1:
        return y, dy, None
    outputs = range(y.shape[1]) if second is None else second
    d2y = [torch.full_like(y[:, 0], float("nan"))] * (d * y.shape[1])
    for j in outputs:
        for k in range(d):
            d2y[k * y.shape[1] + j] = grad(dy[:, k, j])[:, k]
    return y, dy, torch.stack(d2y, dim=1).reshape(n, d, y.shape[1])


# --- all partial derivatives up to third order (stream-function formulations) ---------------

MultiIndex = tuple[int, ...]
"""A partial derivative as the sorted axes it differentiates along: ``()`` is the value,
``(0,)`` is d/dx_0, ``(0, 1)`` is d2/dx_0 dx_1, ``(1, 1, 1)`` is d3/dx_1^3."""


def multi_indices(d: int, order: int) -> list[MultiIndex]:
    """Every sorted multi-index of length 0..order over ``d`` axes, value first."""
    return list(
        chain.from_iterable(combinations_with_replacement(range(d), k) for k in range(order + 1))
    )


def _activation3(z: Tensor, kind: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """sigma(z) and its first three derivatives."""
    if kind == "sin":
        s, c = torch.sin(z), torch.cos(z)
        return s, c, -s, -c
    t = torch.tanh(z)
    dt = 1 - t * t
    return t, dt, -2 * t * dt, dt * (4 * t * t - 2 * dt)


def _chain_rule(
    z: dict[MultiIndex, Tensor], sigma: tuple[Tensor, ...], index: MultiIndex
) -> Tensor:
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
        return a1 * z[index]
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


def taylor_partials(
    model: nn.Module, features: Tensor, jac: Tensor, order: int = 3
) -> dict[MultiIndex, Tensor]:
    """Every partial derivative of the outputs up to ``order`` (<= 3), mixed ones included, by
    stacked forward-mode streams (the third-order extension of :func:`value_and_derivatives`).

    Each layer pushes all ``len(multi_indices(d, order))`` streams through one matrix product
    and combines them with Faa di Bruno's formula. Returns ``{multi_index: (n, out)}``.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"order must be 1, 2 or 3, got {order!r}")
    layers, head = _layers(model)
    jac = _jac_matrix(jac, features.shape[1]).to(features)
    d = jac.shape[1]
    indices = multi_indices(d, order)[1:]

    linear, omega, kind = layers[0]
    z: dict[MultiIndex, Tensor] = {(): omega * F.linear(features, linear.weight, linear.bias)}
    for k in range(d):  # the features are affine in x: only first derivatives, constant
        z[(k,)] = (omega * linear.weight @ jac[:, k]).unsqueeze(0)
    for linear, next_omega, next_kind in [*layers[1:], (head, 1.0, "")]:
        sigma = _activation3(z[()], kind)  # the activation of the layer just computed
        h = [sigma[0]] + [_chain_rule(z, sigma, idx).expand_as(sigma[0]) for idx in indices]
        out = torch.matmul(torch.stack(h), (next_omega * linear.weight).T)
        z = {(): out[0] + next_omega * linear.bias}
        z |= {idx: out[i + 1] for i, idx in enumerate(indices)}
        kind = next_kind
    return z


def nested_partials(
    model: nn.Module, features: Tensor, jac: Tensor, order: int = 3
) -> dict[MultiIndex, Tensor]:
    """The same as :func:`taylor_partials` by nested reverse-mode autograd, for any model (the
    reference): one backward pass per output and multi-index."""
    jac = _jac_matrix(jac, features.shape[1]).to(features)
    n, d = features.shape[0], jac.shape[1]
    shift = torch.zeros(n, d, dtype=features.dtype, device=features.device, requires_grad=True)
    y = model(features + shift @ jac.T)
    out: dict[MultiIndex, Tensor] = {(): y}
    for idx in multi_indices(d, order)[1:]:
        parent = out[idx[:-1]]
        columns = []
        for j in range(y.shape[1]):
            (g,) = torch.autograd.grad(
                parent[:, j], shift, torch.ones_like(parent[:, j]), create_graph=True
            )
            columns.append(g[:, idx[-1]])
        out[idx] = torch.stack(columns, 1)
    return out
