"""Stacked forward-mode derivatives agree with nested autograd (the reference) to rounding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pinn_exp.derivatives import (
    multi_indices,
    nested_autograd,
    nested_partials,
    supports_stacked,
    taylor_partials,
    value_and_derivatives,
)
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
