"""Stacked forward-mode derivatives agree with nested autograd (the reference) to rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pinn_exp.derivatives import (
    nested_autograd,
    nested_partials,
    stream_partials,
    supports_stacked,
    taylor_partials,
    value_and_derivatives,
)
from pinn_exp.jets import multi_indices
from pinn_exp.models import MLP, SIREN

MODELS = {
    "siren": lambda g, w, d, n_in, n_out: SIREN(n_in, n_out, g, width=w, depth=d),
    "mlp": lambda g, w, d, n_in, n_out: MLP(n_in, n_out, g, width=w, depth=d),
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-12) -> None:
    """Relative to the largest entry: entrywise relative error is meaningless near zeros."""
    scale = expected.detach().abs().max().clamp(min=1e-300)
    assert float((actual - expected).detach().abs().max() / scale) < rtol


def setup(name: str, width: int = 24, depth: int = 3, n_in: int = 2, n_out: int = 3, n: int = 40):
    g = torch.Generator().manual_seed(7)
    model = MODELS[name](g, width, depth, n_in, n_out)
    features = 2 * torch.rand(n, n_in, generator=g, dtype=torch.float64) - 1
    return g, model, features


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("width", "depth"), [(1, 1), (24, 3), (48, 5)])
@pytest.mark.parametrize("jac", ["diag", "matrix", "tiny", "huge"])
@pytest.mark.parametrize("order", [1, 2])
def test_stacked_matches_nested_autograd(name, width, depth, jac, order):
    g, model, f = setup(name, width, depth)
    jacs = {
        "diag": torch.tensor([2 / 22, 2 / 4.1], dtype=torch.float64),
        "matrix": torch.randn(2, 3, generator=g, dtype=torch.float64),
        "tiny": torch.tensor([1e-8, 3e-9], dtype=torch.float64),
        "huge": torch.tensor([1e6, 2e5], dtype=torch.float64),
    }
    stacked = value_and_derivatives(model, f, jacs[jac], order)
    nested = nested_autograd(model, f, jacs[jac], order)
    d = 3 if jac == "matrix" else 2
    assert stacked[1].shape == (f.shape[0], d, 3)
    for a, b in zip(stacked[: order + 1], nested[: order + 1]):
        assert a.shape == b.shape
        assert_close(a, b)
    if order == 1:
        assert stacked[2] is None and nested[2] is None


@pytest.mark.parametrize("name", MODELS)
def test_parameter_gradients_through_the_streams_match(name):
    """Training differentiates through the derivatives: both paths give the same gradient."""
    _, model, f = setup(name)
    jac = torch.tensor([0.3, 1.7], dtype=torch.float64)

    def loss(path):
        y, dy, d2y = path(model, f, jac)
        # A residual-like mix of every stream, nonlinear in them.
        return (y[:, 0] * dy[:, 0, 1] + d2y[:, 1, 2] - y[:, 2] * d2y[:, 0, 0]).pow(2).mean()

    grads = [
        torch.autograd.grad(loss(p), list(model.parameters()))
        for p in (value_and_derivatives, nested_autograd)
    ]
    for a, b in zip(*grads):
        assert_close(a, b, rtol=1e-11)


def test_single_input_and_output():
    _, model, f = setup("siren", n_in=1, n_out=1)
    jac = torch.tensor([4.0], dtype=torch.float64)
    for a, b in zip(value_and_derivatives(model, f, jac), nested_autograd(model, f, jac)):
        assert_close(a, b)


def test_nested_autograd_only_requested_second_derivatives():
    _, model, f = setup("mlp")
    _, _, d2y = nested_autograd(model, f, torch.ones(2, dtype=torch.float64), second=(0, 1))
    assert torch.isfinite(d2y[:, :, :2]).all() and torch.isnan(d2y[:, :, 2]).all()


def test_unsupported_models_and_bad_arguments():
    other = nn.Sequential(nn.Linear(2, 3, dtype=torch.float64))
    f = torch.zeros(4, 2, dtype=torch.float64)
    jac = torch.ones(2, dtype=torch.float64)
    assert not supports_stacked(other)
    with pytest.raises(TypeError, match="SIREN and MLP"):
        value_and_derivatives(other, f, jac)
    _, model, f = setup("siren")
    assert supports_stacked(model)
    with pytest.raises(ValueError, match="jac must have shape"):
        value_and_derivatives(model, f, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        value_and_derivatives(model, f, jac, order=3)
    with pytest.raises(ValueError, match="order must be 1 or 2"):
        nested_autograd(model, f, jac, order=0)


@pytest.mark.slow
def test_compiled_stacked_matches():
    """torch.compile of the stacked path (about a minute to compile on 2 CPU cores)."""
    _, model, f = setup("siren")
    jac = torch.tensor([0.3, 1.7], dtype=torch.float64)
    compiled = torch.compile(value_and_derivatives)
    for a, b in zip(compiled(model, f, jac), nested_autograd(model, f, jac)):
        assert_close(a, b)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize(("width", "depth"), [(1, 1), (24, 3)])
@pytest.mark.parametrize("jac", ["diag", "matrix"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_taylor_partials_match_nested_autograd(name, width, depth, jac, order):
    g, model, f = setup(name, width, depth, n_out=2)
    jacs = {
        "diag": torch.tensor([2 / 22, 2 / 4.1], dtype=torch.float64),
        "matrix": torch.randn(2, 3, generator=g, dtype=torch.float64),
    }
    stacked = taylor_partials(model, f, jacs[jac], order)
    nested = nested_partials(model, f, jacs[jac], order)
    d = 3 if jac == "matrix" else 2
    # All sorted multi-indices: 1 + d + d(d+1)/2 + d(d+1)(d+2)/6 up to third order.
    counts = [1, d, d * (d + 1) // 2, d * (d + 1) * (d + 2) // 6]
    assert list(stacked) == list(nested) == multi_indices(d, order)
    assert len(stacked) == sum(counts[: order + 1])
    for index in nested:
        assert stacked[index].shape == (f.shape[0], 2)
        assert_close(stacked[index], nested[index])


@pytest.mark.parametrize("name", MODELS)
def test_taylor_partials_agree_with_the_second_order_streams(name):
    _, model, f = setup(name)
    jac = torch.tensor([0.3, 1.7], dtype=torch.float64)
    y, dy, d2y = value_and_derivatives(model, f, jac, 2)
    partials = taylor_partials(model, f, jac, 3)
    assert_close(partials[()], y)
    for k in range(2):
        assert_close(partials[(k,)], dy[:, k])
        assert_close(partials[(k, k)], d2y[:, k])


@pytest.mark.parametrize("name", MODELS)
def test_parameter_gradients_through_third_order_streams_match(name):
    _, model, f = setup(name, n_out=2)
    jac = torch.tensor([0.3, 1.7], dtype=torch.float64)

    def loss(path):
        d = path(model, f, jac, 3)
        return (
            (
                d[(1,)][:, 0] * d[(0, 1)][:, 0]
                + d[(0, 0, 1)][:, 0]
                - d[(1, 1, 1)][:, 1] * d[()][:, 1]
            )
            .pow(2)
            .mean()
        )

    grads = [
        torch.autograd.grad(loss(p), list(model.parameters()))
        for p in (taylor_partials, nested_partials)
    ]
    for a, b in zip(*grads):
        assert_close(a, b, rtol=1e-11)


def test_taylor_partials_reject_bad_orders():
    _, model, f = setup("siren")
    for order in (0, 4):
        with pytest.raises(ValueError, match="order must be 1, 2 or 3"):
            taylor_partials(model, f, torch.ones(2, dtype=torch.float64), order)


# --- selected streams, for features that are any function of the coordinates ---------------


def embedding(x: torch.Tensor) -> torch.Tensor:
    """A smooth, non-affine feature map of (x0, x1): three features with mixed dependence."""
    a, b = x[:, 0:1], x[:, 1:2]
    return torch.cat([2 * a - 1, torch.cos(3 * b + a), torch.sin(1.5 * b) * a], 1)


def embedding_partials(x: torch.Tensor, indices) -> dict:
    """d^index features / dx^index by autograd on the map alone (cheap: 3 features)."""
    x = x.detach().requires_grad_(True)
    out = {(): embedding(x)}
    for index in sorted(indices, key=len):
        parent = out[index[:-1]]
        cols = [
            torch.autograd.grad(parent[:, f].sum(), x, create_graph=True)[0][:, index[-1]]
            for f in range(parent.shape[1])
        ]
        out[index] = torch.stack(cols, 1)
    return {k: v.detach() for k, v in out.items() if k}


def nested_reference(model, x: torch.Tensor, indices) -> dict:
    """d^index y / dx^index by nested autograd through the feature map and the network."""
    x = x.detach().requires_grad_(True)
    y = model(embedding(x))
    out = {(): y}
    for index in sorted(indices, key=len):
        parent = out[index[:-1]]
        cols = [
            torch.autograd.grad(parent[:, j].sum(), x, create_graph=True)[0][:, index[-1]]
            for j in range(y.shape[1])
        ]
        out[index] = torch.stack(cols, 1)
    return out


SELECTIONS = {
    "allen-cahn": [(0,), (1,), (1, 1)],  # u_t, u_x, u_xx
    "mixed": [(0,), (1,), (0, 1), (1, 1)],
    "first": [(1,)],
    "third": [(0,), (1,), (1, 1), (1, 1, 1)],
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("selection", SELECTIONS)
@pytest.mark.parametrize("fused", [None, False])
def test_stream_partials_of_a_nonaffine_embedding_match_nested_autograd(name, selection, fused):
    g = torch.Generator().manual_seed(11)
    model = MODELS[name](g, 24, 3, 3, 2)
    x = torch.rand(60, 2, generator=g, dtype=torch.float64)
    indices = SELECTIONS[selection]
    partials = embedding_partials(x, indices)
    stacked = stream_partials(model, embedding(x), partials, indices, fused=fused)
    nested = nested_reference(model, x, indices)
    assert list(stacked) == [(), *indices]
    for index in stacked:
        assert stacked[index].shape == (60, 2)
        assert_close(stacked[index], nested[index])

    def loss(d):  # nonlinear in every stream, so that each one's gradient path is used
        return sum((d[i][:, 0] * (1 + d[()][:, 1]) + d[i][:, 1] ** 2).mean() for i in d)

    grads = [
        torch.autograd.grad(loss(d), list(model.parameters()))
        for d in (stream_partials(model, embedding(x), partials, indices, fused=fused), nested)
    ]
    for a, b in zip(*grads):
        assert_close(a, b, rtol=1e-10)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("fused", [True, False])
def test_stream_partials_of_affine_features_equal_taylor_partials(name, fused):
    """Constant (F,) feature partials broadcast; missing second ones are zero."""
    _, model, f = setup(name)
    jac = torch.tensor([0.3, 1.7], dtype=torch.float64)
    indices = [(0,), (1,), (0, 1), (1, 1)]
    first = {(k,): torch.diag(jac)[:, k] for k in range(2)}
    stacked = stream_partials(model, f, first, indices, fused=fused)
    taylor = taylor_partials(model, f, jac, 2)
    for index in stacked:
        assert_close(stacked[index], taylor[index])


def test_fused_streams_are_the_eager_default_and_once_differentiable():
    """The fused streams' backward cannot be differentiated again; the plain ones' can."""
    _, model, f = setup("mlp")
    partials = {(0,): torch.ones(2, dtype=torch.float64)}
    y = stream_partials(model, f, partials)[(0,)]
    assert "StreamLinear" in type(y.grad_fn.next_functions[0][0]).__name__
    (g,) = torch.autograd.grad(y.sum(), list(model.parameters())[0], create_graph=True)
    with pytest.raises(RuntimeError):  # no double backward through the fused streams
        torch.autograd.grad(g.sum(), list(model.parameters())[0])

    # The plain streams (taylor_partials) can be differentiated twice, as nested autograd can.
    def second(path):
        w = list(model.parameters())[0]
        d = path(model, f, torch.tensor([0.3, 1.7], dtype=torch.float64), 2)
        (g,) = torch.autograd.grad(d[(0, 1)].pow(2).sum(), w, create_graph=True)
        return torch.autograd.grad(g.pow(2).sum(), w)[0]

    assert_close(second(taylor_partials), second(nested_partials), rtol=1e-10)


def test_stream_partials_reject_bad_indices():
    _, model, f = setup("siren")
    one = torch.ones(2, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"must contain \(1,\)"):
        stream_partials(model, f, {(0,): one}, [(0,), (1, 1)])
    with pytest.raises(ValueError, match="sorted tuples"):
        stream_partials(model, f, {(1,): one, (0,): one}, [(0,), (1,), (1, 0)])
    with pytest.raises(ValueError, match="sorted tuples"):
        stream_partials(model, f, {(0,): one}, [(0,), (0, 0), (0, 0, 0), (0, 0, 0, 0)])
    with pytest.raises(ValueError, match="not wanted"):
        stream_partials(model, f, {(0,): one, (1,): one}, [(0,)])
    with pytest.raises(ValueError, match="order <= 2"):
        stream_partials(model, f, {(0,): one}, [(0,), (0, 0), (0, 0, 0)], fused=True)
