"""Tests of the sensor-noise models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from pinn_exp.noise import GaussianNoise, Noise, NoNoise

CONF = Path(__file__).resolve().parents[1] / "conf" / "noise"


def clean_data(n: int = 200_000) -> torch.Tensor:
    """Three components of very different scale and offset."""
    g = torch.Generator().manual_seed(123)
    t = torch.rand(n, generator=g, dtype=torch.float64)
    return torch.stack([torch.sin(6 * t), 1e3 * t**2 + 5.0, -1e-3 * torch.cos(t)], dim=1)


@pytest.mark.parametrize("level", [0.01, 0.1, 0.5])
def test_gaussian_relative_std_and_zero_mean(level):
    clean = clean_data()
    noisy = GaussianNoise(level)(clean, torch.Generator().manual_seed(0))
    assert noisy.shape == clean.shape and noisy.dtype == torch.float64
    scaled = (noisy - clean) / clean.std(dim=0)
    # n = 2e5: the sample std is within ~0.2 % and the sample mean within ~0.002 level (1 sd).
    torch.testing.assert_close(
        scaled.std(dim=0), torch.full((3,), level).double(), rtol=0.02, atol=0
    )
    assert (scaled.mean(dim=0).abs() < 0.01 * level).all()


def test_gaussian_columns_independent():
    clean = clean_data(50_000)
    eps = GaussianNoise(0.1)(clean, torch.Generator().manual_seed(0)) - clean
    corr = torch.corrcoef((eps / clean.std(dim=0)).T)
    torch.testing.assert_close(corr, torch.eye(3, dtype=torch.float64), atol=0.03, rtol=0)


def test_gaussian_seeded_reproducible():
    clean = clean_data(1000)
    noise = GaussianNoise(0.1)
    a = noise(clean, torch.Generator().manual_seed(7))
    b = noise(clean, torch.Generator().manual_seed(7))
    c = noise(clean, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_gaussian_level_zero_and_constant_column_are_clean():
    clean = clean_data(100)
    assert torch.equal(GaussianNoise(0.0)(clean, torch.Generator()), clean)
    constant = torch.ones(100, 1, dtype=torch.float64)
    assert torch.equal(GaussianNoise(0.1)(constant, torch.Generator()), constant)


@pytest.mark.parametrize("level", [-0.1, float("nan"), float("inf"), "0.1", True])
def test_bad_level_raises(level):
    with pytest.raises(ValueError, match="level"):
        GaussianNoise(level)


@pytest.mark.parametrize("noise", [NoNoise(), GaussianNoise(0.1)], ids=repr)
def test_bad_clean_shape_raises(noise):
    with pytest.raises(ValueError, match="clean"):
        noise(torch.zeros(5, dtype=torch.float64), torch.Generator())
    if isinstance(noise, GaussianNoise):
        with pytest.raises(ValueError, match="at least 2 sensors"):
            noise(torch.zeros(1, 2, dtype=torch.float64), torch.Generator())


def test_no_noise_is_identity():
    clean = clean_data(100)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    noisy = NoNoise()(clean, g)
    assert torch.equal(noisy, clean) and noisy is not clean
    assert torch.equal(g.get_state(), state)


def test_repr():
    assert repr(GaussianNoise(0.1)) == "GaussianNoise(level=0.1)"
    assert repr(NoNoise()) == "NoNoise()"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_yaml_instantiates(path):
    assert path.read_text().startswith("# ")
    noise = instantiate(OmegaConf.load(path))
    assert isinstance(noise, Noise)
    clean = clean_data(100)
    assert noise(clean, torch.Generator().manual_seed(0)).shape == clean.shape


def test_yaml_options_present():
    assert {p.stem for p in CONF.glob("*.yaml")} >= {"none", "gaussian"}
