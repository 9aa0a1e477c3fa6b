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
:func:`stream_partials` takes any smooth feature map instead (its partials, e.g. of a periodic
embedding ``cos(pi x)``) and propagates only the streams a residual needs. Up to second order
its activations run as one autograd node each with a hand-written backward, and the stacked
products compute their weight gradient per stream (:mod:`pinn_exp.derivatives_fused`): in eager
mode that roughly halves the passes over memory of the plain graph. Mixed and third-order
partials (:func:`taylor_partials`) combine the streams by Faa di Bruno's formula on
multi-index jets (:mod:`pinn_exp.jets`). Nested reverse-mode autograd
(:func:`nested_autograd`, :func:`nested_partials`) computes the same quantities for any model:
the reference the stacked paths are tested against.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pinn_exp.derivatives_fused import StreamLinear, fused_streams
from pinn_exp.jets import MultiIndex, activation3, chain_rule, multi_indices
from pinn_exp.models import MLP, SIREN, SineLayer

__all__ = [
    "nested_autograd",
    "nested_partials",
    "stream_partials",
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


def use_stacked(derivatives: str, model: nn.Module, warn: bool = True) -> bool:
    """Whether a problem configured with ``pde.derivatives=derivatives`` takes the stacked path
    for ``model``: 'stacked' and a SIREN or MLP. Asked for a model it does not support, it warns
    (when ``warn``) and the problem falls back to nested autograd."""
    if derivatives != "stacked":
        return False
    if supports_stacked(model):
        return True
    if warn:
        warnings.warn(
            f"pde.derivatives='stacked' supports SIREN and MLP, not {type(model).__name__}; "
            "using nested autograd",
            stacklevel=4,
        )
    return False


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
    jac = _jac_matrix(jac, features.shape[1]).to(features)
    d = jac.shape[1]
    # Affine features: only their first derivatives are nonzero, and they are constant.
    first = {(k,): jac[:, k] for k in range(d)}
    return stream_partials(model, features, first, multi_indices(d, order)[1:], fused=False)


def _check_indices(indices: Sequence[MultiIndex], given: Mapping[MultiIndex, Tensor]) -> None:
    wanted = set(indices)
    for index in indices:
        if not (1 <= len(index) <= 3 and tuple(sorted(index)) == tuple(index)):
            raise ValueError(
                f"indices must be sorted tuples of 1 to 3 axes, e.g. (0,) or (1, 1); got {index!r}"
            )
        # Faa di Bruno's formula for an index needs every sub-multiset of it.
        for k in range(1, len(index)):
            for sub in combinations(index, k):
                if sub not in wanted:
                    raise ValueError(f"indices must contain {sub!r}, which {index!r} needs")
    extra = set(given) - wanted
    if extra:
        raise ValueError(f"feature_partials has indices that are not wanted: {sorted(extra)}")


def _is_compiling() -> bool:
    check = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    return bool(check()) if check is not None else torch._dynamo.is_compiling()


def stream_partials(
    model: nn.Module,
    features: Tensor,
    feature_partials: Mapping[MultiIndex, Tensor],
    indices: Sequence[MultiIndex] | None = None,
    fused: bool | None = None,
) -> dict[MultiIndex, Tensor]:
    """Selected partial derivatives of the outputs by stacked forward-mode streams, for
    features that are any smooth function ``f(x)`` of the coordinates (a periodic embedding
    ``(cos(pi x), sin(pi x))``, say), not only an affine one.

    Args:
        model: a :class:`~pinn_exp.models.SIREN` or :class:`~pinn_exp.models.MLP`.
        features: network inputs ``f(x)`` (n, F).
        feature_partials: ``{index: d^index f / dx^index}`` for the nonzero partials of the
            features, each per point (n, F) or constant (F,); missing ones are zero.
        indices: the wanted partials, sorted multi-indices of order 1 to 3 (see
            :data:`~pinn_exp.jets.MultiIndex`); every sub-multiset of one must be listed too
            (``(1, 1)`` needs ``(1,)``), since the chain rule propagates it. Default: the keys
            of ``feature_partials``. Only these streams are propagated: a residual that needs
            ``u_t`` and ``u_xx`` pays for 4 streams, not for all 6 of second order.
        fused: compute each activation of the streams as one autograd node with a hand-written
            backward (:class:`~pinn_exp.derivatives_fused.StreamActivation`; orders <= 2 only;
            its backward cannot be differentiated again), instead of a graph of elementwise
            ops. Default: fused for orders <= 2 unless inside ``torch.compile``, which fuses the
            plain ops itself.

    Returns:
        ``{(): y, index: d^index y for index in indices}``, each (n, out).
    """
    indices = list(feature_partials if indices is None else indices)
    _check_indices(indices, feature_partials)
    second_order = all(len(index) <= 2 for index in indices)
    if fused is None:
        fused = second_order and not _is_compiling()
    if fused and not second_order:
        raise ValueError("fused streams support derivatives of order <= 2")
    layers, head = _layers(model)
    if fused:
        return fused_streams(layers, head, features, feature_partials, indices)

    linear, omega, kind = layers[0]
    z: dict[MultiIndex, Tensor] = {(): omega * F.linear(features, linear.weight, linear.bias)}
    for index, partial in feature_partials.items():
        partial = partial.to(features)
        if partial.ndim == 1:  # constant: a (w, F) x (F,) product, broadcast over the batch
            z[index] = (omega * linear.weight @ partial).unsqueeze(0)
        else:
            z[index] = partial @ (omega * linear.weight).T
    third = not second_order
    for linear, next_omega, next_kind in [*layers[1:], (head, 1.0, "")]:
        # The activation of the layer just computed (its third derivative only if needed).
        sigma = activation3(z[()], kind) if third else (*_activation(z[()], kind), None)
        h = [sigma[0]] + [chain_rule(z, sigma, idx).expand_as(sigma[0]) for idx in indices]
        # unbind, not indexing: its backward stacks the streams' gradients, where indexing
        # fills a zeroed tensor of all streams for each one (measured: ~20 % of a step).
        out = StreamLinear.apply(torch.stack(h), next_omega * linear.weight).unbind(0)
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
