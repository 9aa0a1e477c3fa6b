"""Tests of the physical-parameter anchors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pinn_exp.anchors import (
    Anchor,
    ExpAnchor,
    IdentityAnchor,
    SoftplusAnchor,
    inverse_softplus,
    softplus,
)

CONF = Path(__file__).resolve().parents[1] / "conf" / "anchor"


@pytest.mark.parametrize("initial", [1e-4, 1.0, math.log(2.0), 25.0, 50.0, 1e4])
@pytest.mark.parametrize("beta", [1.0, 0.01, 3.0, 100.0])
def test_softplus_initial_value_exact(initial, beta):
    anchor = SoftplusAnchor(initial, beta=beta)
    value = anchor.value()
    assert value.dtype == torch.float64 and value.shape == ()
    assert anchor.raw.dtype == torch.float64 and anchor.raw.shape == ()
    assert abs(value.item() - initial) <= 1e-14 * initial


def test_inverse_softplus_round_trip():
    # Below ~1e-10 the rounding of raw ~ log(y) alone costs |log y| * 2.2e-16 relative error.
    for y in [1e-10, 1e-8, 0.5, 20.0, 30.0, 700.0, 1e300]:
        x = torch.tensor(inverse_softplus(y), dtype=torch.float64)
        assert abs(softplus(x).item() - y) <= 1e-14 * y


@pytest.mark.parametrize("raw", [-1e3, -50.0, 0.0, 50.0, 1e3])
def test_softplus_positive_with_finite_gradient(raw):
    anchor = SoftplusAnchor(1.0, beta=2.0)
    with torch.no_grad():
        anchor.raw.fill_(raw)
    value = anchor.value()
    value.backward()
    assert value.item() >= 0 and math.isfinite(value.item())
    # d value / d raw = beta * sigmoid(raw)
    assert torch.isfinite(anchor.raw.grad)
    expected = 2.0 * torch.sigmoid(torch.tensor(raw, dtype=torch.float64))
    torch.testing.assert_close(anchor.raw.grad, expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("anchor_cls", [SoftplusAnchor, ExpAnchor, IdentityAnchor])
def test_gradient_flows_to_raw_and_optimizer_moves_value(anchor_cls):
    anchor = anchor_cls(2.0)
    assert [name for name, _ in anchor.named_parameters()] == ["raw"]
    optimizer = torch.optim.SGD([{"params": [anchor.raw], "lr": 0.1}])
    loss = (anchor.value() - 3.0) ** 2
    loss.backward()
    assert anchor.raw.grad is not None and anchor.raw.grad.item() < 0
    optimizer.step()
    assert anchor.value().item() > 2.0
    assert anchor() is not None and torch.equal(anchor(), anchor.value())


def test_identity_anchor():
    anchor = IdentityAnchor(-0.7)
    assert anchor.value().dtype == torch.float64
    assert anchor.value().item() == -0.7 and anchor.raw.item() == -0.7


@pytest.mark.parametrize("initial", [0.0, -1.0, float("nan"), float("inf"), "1.0"])
def test_softplus_bad_initial_raises(initial):
    with pytest.raises(ValueError, match="initial"):
        SoftplusAnchor(initial)


@pytest.mark.parametrize("beta", [0.0, -2.0, float("inf")])
def test_softplus_bad_beta_raises(beta):
    with pytest.raises(ValueError, match="beta"):
        SoftplusAnchor(1.0, beta=beta)


def test_softplus_ratio_underflow_raises():
    with pytest.raises(ValueError, match="initial / beta"):
        SoftplusAnchor(1e-300, beta=1e300)


# --- ExpAnchor: value = beta * exp(raw) -------------------------------------------------------


@pytest.mark.parametrize("initial", [1e-4, 1.0, 0.5, 25.0, 50.0, 1e4])
@pytest.mark.parametrize("beta", [1.0, 0.01, 3.0, 100.0])
def test_exp_initial_value_round_trips(initial, beta):
    anchor = ExpAnchor(initial, beta=beta)
    value = anchor.value()
    assert value.dtype == torch.float64 and value.shape == ()
    assert anchor.raw.dtype == torch.float64 and anchor.raw.shape == ()
    assert anchor.raw.item() == math.log(initial / beta)
    assert abs(value.item() - initial) <= 1e-14 * initial


@pytest.mark.parametrize("raw", [-700.0, -50.0, 0.0, 1.5, 50.0, 700.0])
@pytest.mark.parametrize("beta", [1.0, 0.01, 3.0])
def test_exp_positive_with_gradient_equal_to_the_value(raw, beta):
    anchor = ExpAnchor(1.0, beta=beta)
    with torch.no_grad():
        anchor.raw.fill_(raw)
    value = anchor.value()
    value.backward()
    assert 0 < value.item() < math.inf
    # d value / d raw = beta * exp(raw) = value
    torch.testing.assert_close(anchor.raw.grad, value.detach(), rtol=1e-15, atol=0)
    torch.testing.assert_close(
        value, beta * torch.tensor(raw, dtype=torch.float64).exp(), rtol=1e-15, atol=0
    )


def test_exp_equal_raw_steps_are_equal_relative_steps():
    anchor = ExpAnchor(50.0, beta=100.0)
    values = []
    for _ in range(4):
        values.append(anchor.value().item())
        with torch.no_grad():
            anchor.raw += 0.1
    ratios = [b / a for a, b in zip(values, values[1:], strict=False)]
    assert ratios == pytest.approx([math.exp(0.1)] * 3, rel=1e-14)


def test_exp_stays_positive_under_large_steps():
    # A loss that pushes the value below zero: the identity anchor would cross, exp cannot.
    anchor = ExpAnchor(0.3)
    optimizer = torch.optim.SGD([anchor.raw], lr=10.0)
    for _ in range(20):
        optimizer.zero_grad()
        (anchor.value() + 1.0).pow(2).backward()
        optimizer.step()
        assert anchor.value().item() > 0


@pytest.mark.parametrize("initial", [0.0, -1.0, float("nan"), float("inf"), "1.0", True])
def test_exp_bad_initial_raises(initial):
    with pytest.raises(ValueError, match="initial must be a finite real number"):
        ExpAnchor(initial)


@pytest.mark.parametrize("beta", [0.0, -2.0, float("inf"), float("nan"), None])
def test_exp_bad_beta_raises(beta):
    with pytest.raises(ValueError, match="beta must be a finite real number > 0"):
        ExpAnchor(1.0, beta=beta)


def test_exp_ratio_underflow_raises():
    with pytest.raises(ValueError, match="initial / beta"):
        ExpAnchor(1e-300, beta=1e300)


def test_log_option_composes_in_the_config_tree(make_cfg):
    # test_config's every-option test composes anchor=log with the default (forward) pde, which
    # never instantiates the anchor: compose it where an inverse problem takes it.
    cfg = make_cfg("pde=allen_cahn_inverse", "anchor=log", "anchor.beta=2.0")
    anchor = instantiate(cfg.pde.anchor)(initial=0.5)
    assert isinstance(anchor, ExpAnchor) and anchor.beta == 2.0
    assert abs(anchor.value().item() - 0.5) <= 1e-15


@pytest.mark.parametrize("initial", [float("nan"), float("inf")])
def test_identity_bad_initial_raises(initial):
    with pytest.raises(ValueError, match="initial"):
        IdentityAnchor(initial)


def test_repr():
    assert repr(SoftplusAnchor(2.0, beta=0.5)) == "SoftplusAnchor(initial=2.0, beta=0.5)"
    assert repr(IdentityAnchor(2.0)) == "IdentityAnchor(initial=2.0)"
    assert repr(ExpAnchor(2.0, beta=0.5)) == "ExpAnchor(initial=2.0, beta=0.5)"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_yaml_instantiates(path):
    assert path.read_text().startswith("# ")
    anchor = instantiate(OmegaConf.load(path))(initial=0.3)
    assert isinstance(anchor, Anchor)
    assert abs(anchor.value().item() - 0.3) <= 1e-14 * 0.3


def test_yaml_options_present():
    assert {p.stem for p in CONF.glob("*.yaml")} >= {"softplus", "none", "log"}
