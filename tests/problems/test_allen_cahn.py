import math

import numpy as np
import pytest
import torch
from torch import nn

from pinn_exp.problems.allen_cahn import AllenCahn


class Manufactured(nn.Module):
    """u*(t, x) = cos(pi x) exp(-t), read from the problem's features."""

    def __init__(self, embedded: bool):
        super().__init__()
        self.embedded = embedded

    def forward(self, f):
        t = (f[:, 0:1] + 1) / 2
        c = f[:, 1:2] if self.embedded else torch.cos(math.pi * f[:, 1:2])
        return c * torch.exp(-t)


@pytest.fixture(scope="module")
def problems(tmp_path_factory):
    data = tmp_path_factory.mktemp("ac")
    gen = torch.Generator().manual_seed(0)
    return {e: AllenCahn(gen, data, periodic_embedding=e) for e in (True, False)}


@pytest.mark.parametrize("embedded", [True, False])
def test_residual_equals_manufactured_source(problems, embedded):
    """With u* = cos(pi x) e^-t: u_t = -u, u_xx = -pi^2 u, so the residual must equal the
    source s = -u + d pi^2 u + k (u^3 - u) to round-off."""
    p = problems[embedded]
    x = p.sample_domain(500, torch.Generator().manual_seed(1))
    u = torch.cos(math.pi * x[:, 1]) * torch.exp(-x[:, 0])
    source = -u + p.d * math.pi**2 * u + p.k * (u**3 - u)
    r = p.residual(Manufactured(embedded), x)
    assert torch.allclose(r, source, atol=1e-12, rtol=0)
    # Adding the source term makes the residual vanish exactly.
    assert (r - source).abs().max() < 1e-12


def test_loss_terms_and_periodicity(problems):
    x = problems[True].sample_domain(64, torch.Generator().manual_seed(2))
    assert set(problems[True].losses(Manufactured(True), x)) == {"pde", "ic"}
    terms = problems[False].losses(Manufactured(False), x)
    assert set(terms) == {"pde", "ic", "bc"}
    # u* is periodic with periodic slope, so the bc term is zero.
    assert terms["bc"].item() < 1e-28
    # u*(0, x) = cos(pi x) differs from x^2 cos(pi x): the ic term sees it.
    assert terms["ic"].item() > 1e-2


def test_domain_and_evaluation(problems):
    p = problems[True]
    x = p.sample_domain(1000, torch.Generator().manual_seed(3))
    assert x.dtype == torch.float64
    assert (x[:, 0] >= 0).all() and (x[:, 0] <= 1).all() and (x[:, 1].abs() <= 1).all()

    class Exact(nn.Module):  # interpolates the reference on its own grid
        def forward(self, f):
            return torch.zeros(len(f), 1, dtype=f.dtype)

    ev = p.evaluate(Exact())
    assert ev.grid_shape == (201, 512)
    assert ev.metrics["rel_l2"] == pytest.approx(1.0)  # zero prediction: error = 100 %
    np.testing.assert_allclose(
        ev.reference["u"][0], ev.extra["x"] ** 2 * np.cos(np.pi * ev.extra["x"]), atol=1e-14
    )


def test_bad_arguments_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="pde.d"):
        AllenCahn(torch.Generator(), tmp_path, d=-1.0)
    with pytest.raises(ValueError, match="pde.n_ic"):
        AllenCahn(torch.Generator(), tmp_path, n_ic=0)


def test_inverse_rejects_non_positive_initial_guess(tmp_path):
    from pinn_exp.anchors import IdentityAnchor
    from pinn_exp.noise import NoNoise
    from pinn_exp.problems.allen_cahn_inverse import AllenCahnInverse

    with pytest.raises(ValueError, match="pde.d_initial"):
        AllenCahnInverse(torch.Generator(), tmp_path, IdentityAnchor, NoNoise(), d_initial=-1e-3)
