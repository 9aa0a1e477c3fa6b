import math

import pytest
import torch

from pinn_exp.models import MLP, SIREN, gradient


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_siren_first_and_hidden_layer_init_bounds():
    net = SIREN(2, 1, _gen(), width=128, depth=3, omega_0=30.0)
    w0 = net.body[0].linear.weight
    assert w0.abs().max() <= 1 / 2 and w0.abs().max() > 0.45  # U(-1/n_in, 1/n_in)
    w1 = net.body[1].linear.weight
    bound = math.sqrt(6 / 128) / 30
    assert w1.abs().max() <= bound
    # A uniform distribution on [-b, b] has standard deviation b / sqrt(3).
    assert w1.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03)


def test_siren_activations_keep_arcsine_statistics_through_depth():
    """Sitzmann et al.: with their init every sine layer's output is ~arcsine distributed
    (standard deviation 1/sqrt(2)) whatever the depth."""
    net = SIREN(2, 1, _gen(1), width=256, depth=6)
    x = 2 * torch.rand(4000, 2, generator=_gen(2), dtype=torch.float64) - 1
    h = x
    for layer in net.body[1:]:
        h = layer(net.body[0](x) if h is x else h)
        assert h.std().item() == pytest.approx(1 / math.sqrt(2), abs=0.06)


@pytest.mark.parametrize("cls", [SIREN, MLP])
def test_models_are_float64_and_seeded(cls):
    a, b = cls(3, 2, _gen(5), width=8, depth=2), cls(3, 2, _gen(5), width=8, depth=2)
    assert all(p.dtype == torch.float64 for p in a.parameters())
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    c = cls(3, 2, _gen(6), width=8, depth=2)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    assert a(torch.zeros(4, 3, dtype=torch.float64)).shape == (4, 2)


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"depth": -1}, {"omega_0": 0.0}])
def test_siren_rejects_bad_sizes(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        SIREN(2, 1, _gen(), **kwargs)


def test_gradient_matches_closed_form():
    x = torch.rand(50, 2, dtype=torch.float64, generator=_gen(3)).requires_grad_(True)
    y = torch.sin(3 * x[:, 0]) * x[:, 1] ** 2
    g = gradient(y, x)
    assert torch.allclose(g[:, 0], 3 * torch.cos(3 * x[:, 0]) * x[:, 1] ** 2, atol=1e-14)
    gxx = gradient(g[:, 0], x)[:, 0]
    assert torch.allclose(gxx, -9 * torch.sin(3 * x[:, 0]) * x[:, 1] ** 2, atol=1e-13)
