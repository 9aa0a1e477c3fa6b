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
its activations run as one autograd node each with a hand-written backward
(:class:`StreamActivation`), and the stacked products compute their weight gradient per stream
(:class:`StreamLinear`): in eager mode that roughly halves the passes over memory of the
plain graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from itertools import chain, combinations, combinations_with_replacement

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from pinn_exp.models import MLP, SIREN, SineLayer

__all__ = [
    "multi_indices",
    "nested_autograd",
    "nested_partials",
    "StreamActivation",
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
            :data:`MultiIndex`); every sub-multiset of one must be listed too (``(1, 1)``
            needs ``(1,)``), since the chain rule propagates it. Default: the keys of
            ``feature_partials``. Only these streams are propagated: a residual that needs
            ``u_t`` and ``u_xx`` pays for 4 streams, not for all 6 of second order.
        fused: compute each activation of the streams as one autograd node with a hand-written
            backward (:class:`StreamActivation`; orders <= 2 only; its backward cannot be
            differentiated again), instead of a graph of elementwise ops. Default: fused for
            orders <= 2 unless inside ``torch.compile``, which fuses the plain ops itself.

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
        return _fused_streams(layers, head, features, feature_partials, indices)

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


def _fused_streams(
    layers: list[tuple[nn.Linear, float, str]],
    head: nn.Linear,
    features: Tensor,
    feature_partials: Mapping[MultiIndex, Tensor],
    indices: Sequence[MultiIndex],
) -> dict[MultiIndex, Tensor]:
    """:func:`stream_partials` (orders <= 2) with one :class:`StreamActivation` per layer."""
    first = [index for index in indices if len(index) == 1]
    second = [index for index in indices if len(index) == 2]
    position = {index: k for k, index in enumerate(first)}
    pairs = tuple((position[(i,)], position[(j,)]) for i, j in second)
    order = [*first, *second]  # the layout of the stacked streams after the value
    # The input streams (1 + len(order), n, F): through the first layer in one product.
    inputs = [features] + [
        feature_partials[index].to(features).expand_as(features)
        if index in feature_partials
        else torch.zeros_like(features)
        for index in order
    ]
    linear, omega, kind = layers[0]
    streams = StreamLinear.apply(torch.stack(inputs), omega * linear.weight)
    for next_linear, next_omega, next_kind in [*layers[1:], (head, 1.0, "")]:
        h = StreamActivation.apply(streams, omega * linear.bias, kind, len(first), pairs)
        streams = StreamLinear.apply(h, next_omega * next_linear.weight)
        linear, omega, kind = next_linear, next_omega, next_kind
    out = streams.unbind(0)
    return {(): out[0] + head.bias} | {index: out[k + 1] for k, index in enumerate(order)}


class StreamLinear(torch.autograd.Function):
    """``h @ weight.T`` on stacked streams ``h`` (S, n, in), whose weight gradient
    ``sum_s g_s^T h_s`` is one batched product over the S streams and a sum, not one product
    over all S n rows: with a long reduction axis, MKL's product splits it between threads and
    waits on both (measured on this 2-core machine, with another job on it: 1.7 ms against
    0.4 ms for 4 x 5,000 points, width 30)."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor) -> Tensor:
        ctx.save_for_backward(h, weight)
        return torch.matmul(h, weight.T)

    @staticmethod
    def backward(ctx, g: Tensor):  # plain operations: differentiable again
        h, weight = ctx.saved_tensors
        grad_h = torch.matmul(g, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(g.transpose(1, 2), h).sum(0) if ctx.needs_input_grad[1] else None
        return grad_h, grad_w


class StreamActivation(torch.autograd.Function):
    """``sigma`` applied to stacked pre-activation streams, as one autograd node.

    The input ``s`` stacks ``[z - b, z_1, ..., z_m, z_p1, ..., z_pq]``: the value without the
    bias ``b``, ``m`` first derivatives and ``q`` second ones, the k-th of which is
    ``d2/dx_i dx_j`` with ``(i, j) = pairs[k]`` (positions among the first derivatives). The
    output stacks ``[sigma(z), sigma'(z) z_i, sigma''(z) z_i z_j + sigma'(z) z_ij]``. The
    backward is the transpose of that map,

    .. math::
        \\bar z_i &= \\sigma' \\bar h_i + \\sum_k \\sigma'' \\bar h_{p_k}
            (z_j [i = i_k] + z_i [i = j_k]), \\qquad \\bar z_{ij} = \\sigma' \\bar h_{ij}, \\\\
        \\bar z &= \\sigma' \\bar h + \\sigma'' \\sum_s z_s \\bar h_s
            + \\sigma''' \\sum_k z_{i_k} z_{j_k} \\bar h_{p_k},

    written with in-place and ``out=`` operations: about half the passes over the
    (n, width) arrays that autograd's graph of elementwise operations makes, and a fraction of
    its operator calls (measured on Allen-Cahn, 5,000 points, loss and gradient: 1.8x (tanh
    MLP 3 x 30) and 1.4x (SIREN 3 x 30) the speed of the unfused streams). Its backward is not
    differentiable again.
    """

    @staticmethod
    def forward(ctx, s: Tensor, bias: Tensor, kind: str, m: int, pairs: tuple) -> Tensor:
        h = torch.empty_like(s)
        z = s[0] + bias
        if kind == "tanh":
            a0 = torch.tanh(z, out=h[0])
            a1 = torch.addcmul(torch.ones((), dtype=z.dtype, device=z.device), a0, a0, value=-1)
            a2 = torch.mul(a0, a1).mul_(-2) if pairs else None
        else:  # sin
            a0 = torch.sin(z, out=h[0])
            a1 = torch.cos(z)
            a2 = torch.neg(a0) if pairs else None
        torch.mul(s[1 : 1 + m], a1, out=h[1 : 1 + m])
        for k, (i, j) in enumerate(pairs):
            hk = torch.mul(s[1 + i], s[1 + j], out=h[1 + m + k])
            hk.mul_(a2).addcmul_(a1, s[1 + m + k])
        ctx.kind, ctx.m, ctx.pairs = kind, m, pairs
        ctx.save_for_backward(s, h, a1, a2)
        return h

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor):
        s, h, a1, a2 = ctx.saved_tensors
        m, pairs, a0 = ctx.m, ctx.pairs, h[0]
        gs = torch.empty_like(g)
        torch.mul(g[1:], a1, out=gs[1:])  # sigma' times each derivative stream's gradient
        gz = torch.mul(g[0], a1, out=gs[0])
        if len(s) > 1:
            if a2 is None:  # first derivatives only: sigma'' was not needed forward
                a2 = -2 * a0 * a1 if ctx.kind == "tanh" else -a0
            # sigma'' sum_s z_s g_s, accumulated without a temporary of all streams
            acc = s[1] * g[1]
            for k in range(2, len(s)):
                acc.addcmul_(s[k], g[k])
            gz.addcmul_(a2, acc)
        if pairs:
            # sigma''' of tanh: sigma' (6 t^2 - 2) = -2 (sigma' + 1.5 t sigma'')
            a3 = torch.addcmul(a1, a0, a2, value=1.5).mul_(-2) if ctx.kind == "tanh" else -a1
            for k, (i, j) in enumerate(pairs):
                gk = g[1 + m + k]
                zj_gk = s[1 + j] * gk
                if i == j:
                    gs[1 + i].addcmul_(a2, zj_gk, value=2)
                else:
                    gs[1 + i].addcmul_(a2, zj_gk)
                    gs[1 + j].addcmul_(a2, s[1 + i] * gk)
                gz.addcmul_(a3 * s[1 + i], zj_gk)
        return gs, gz.sum(0), None, None, None


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
