import math

import numpy as np
import pytest
import torch
from torch import nn

from pinn_exp.models import MLP, SIREN
from pinn_exp.problems.allen_cahn import (
    CAUSAL_CUTOFF,
    AllenCahn,
    causal_weights,
    evaluation_grid,
)


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
def data_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ac")


@pytest.fixture(scope="module")
def problems(data_dir):
    # Manufactured is no SIREN or MLP: nested autograd, which the stacked path falls back to.
    gen = torch.Generator().manual_seed(0)
    return {
        e: AllenCahn(gen, data_dir, periodic_embedding=e, derivatives="autograd")
        for e in (True, False)
    }


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
    with pytest.raises(ValueError, match="pde.derivatives"):
        AllenCahn(torch.Generator(), tmp_path, derivatives="forward")
    with pytest.raises(ValueError, match="pde.compile"):
        AllenCahn(torch.Generator(), tmp_path, compile="yes")
    with pytest.raises(ValueError, match="pde.reference_n"):
        AllenCahn(torch.Generator(), tmp_path, reference_n=1000)


def test_evaluation_grid_takes_every_nth_point_of_a_finer_reference():
    from pinn_exp.reference.allen_cahn import AllenCahnReference

    x = -1 + 2 * np.arange(2048) / 2048
    u = np.outer(np.arange(3.0), x)
    coarse = evaluation_grid(AllenCahnReference(t=np.arange(3.0), x=x, u=u, d=1e-4, k=5.0))
    np.testing.assert_array_equal(coarse.x, -1 + 2 * np.arange(512) / 512)
    np.testing.assert_array_equal(coarse.u, u[:, ::4])


def test_inverse_rejects_non_positive_initial_guess(tmp_path):
    from pinn_exp.anchors import IdentityAnchor
    from pinn_exp.noise import NoNoise
    from pinn_exp.problems.allen_cahn_inverse import AllenCahnInverse

    with pytest.raises(ValueError, match="pde.d_initial"):
        AllenCahnInverse(torch.Generator(), tmp_path, IdentityAnchor, NoNoise(), d_initial=-1e-3)


# --- stacked streams against nested autograd (the reference) ---------------------------------

MODELS = {
    "siren": lambda g, n_in: SIREN(n_in, 1, g, width=30, depth=3, omega_0=5.0, hidden_omega_0=5.0),
    "mlp": lambda g, n_in: MLP(n_in, 1, g, width=30, depth=3),
}


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Relative to the largest entry: entrywise relative error is meaningless near zeros."""
    scale = expected.detach().abs().max().clamp(min=1e-300)
    return float((actual - expected).detach().abs().max() / scale)


@pytest.fixture(scope="module")
def pair(data_dir):
    """The same problem with each derivative path, per embedding; causal weighting on."""
    return {
        (e, path): AllenCahn(
            torch.Generator().manual_seed(0),
            data_dir,
            periodic_embedding=e,
            causal_eps=50.0,
            derivatives=path,
        )
        for e in (True, False)
        for path in ("stacked", "autograd")
    }


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("embedded", [True, False])
def test_stacked_matches_nested_autograd(pair, name, embedded):
    """u, u_t, u_xx, the residual, the loss terms and their parameter gradients agree."""
    stacked, nested = pair[(embedded, "stacked")], pair[(embedded, "autograd")]
    g = torch.Generator().manual_seed(3)
    model = MODELS[name](g, stacked.n_features)
    x = stacked.sample_domain(400, g)
    for a, b in zip(stacked.stacked_partials(model, x), nested.nested_partials(model, x)):
        assert rel_err(a, b) < 1e-10
    assert rel_err(stacked.residual(model, x), nested.residual(model, x)) < 1e-10
    pointwise = [p.pointwise_residual(model, x) for p in (stacked, nested)]
    assert rel_err(*pointwise) < 1e-10

    def gradients(problem, loss):
        return torch.autograd.grad(loss(problem), list(model.parameters()))

    def training_loss(problem):
        return sum(problem.losses(model, x).values())

    def mixed(problem):  # u_xx enters the residual times d = 1e-4: weigh it O(1) here
        path = problem.stacked_partials if problem is stacked else problem.nested_partials
        u, u_t, u_xx = path(model, x)
        return (u_t - 0.3 * u_xx + u**3).pow(2).mean()

    for loss in (training_loss, mixed):
        for a, b in zip(gradients(stacked, loss), gradients(nested, loss)):
            assert rel_err(a, b) < 1e-10


def test_stacked_per_term_gradients_share_one_graph(pair):
    """Balancers and surgery take each term's gradient from one graph (retain_graph)."""
    g = torch.Generator().manual_seed(9)
    model = MODELS["siren"](g, 3)
    x = pair[(True, "stacked")].sample_domain(200, g)
    params = list(model.parameters())
    per_term = {}
    for path in ("stacked", "autograd"):
        terms = pair[(True, path)].losses(model, x)
        per_term[path] = [torch.autograd.grad(t, params, retain_graph=True) for t in terms.values()]
    for ga, gb in zip(per_term["stacked"], per_term["autograd"]):
        for a, b in zip(ga, gb):
            assert rel_err(a, b) < 1e-10


def test_stacked_falls_back_to_nested_for_other_models(pair):
    p = pair[(True, "stacked")]
    x = p.sample_domain(50, torch.Generator().manual_seed(4))
    with pytest.warns(UserWarning, match="nested autograd"):
        r = p.residual(Manufactured(True), x)
    assert rel_err(r, pair[(True, "autograd")].residual(Manufactured(True), x)) == 0.0


def test_inverse_stacked_matches_nested_with_the_unknown(data_dir):
    from pinn_exp.anchors import SoftplusAnchor
    from pinn_exp.noise import NoNoise
    from pinn_exp.problems.allen_cahn_inverse import AllenCahnInverse

    problems = {
        path: AllenCahnInverse(
            torch.Generator().manual_seed(0), data_dir, SoftplusAnchor, NoNoise(), derivatives=path
        )
        for path in ("stacked", "autograd")
    }
    g = torch.Generator().manual_seed(5)
    model = MODELS["mlp"](g, 3)
    x = problems["stacked"].sample_domain(300, g)
    grads = {}
    for path, p in problems.items():
        terms = p.losses(model, x)
        assert list(terms) == ["pde", "ic", "data"]
        params = list(model.parameters()) + list(p.unknowns.parameters())
        grads[path] = torch.autograd.grad(sum(terms.values()), params)
    for a, b in zip(grads["stacked"], grads["autograd"]):
        assert rel_err(a, b) < 1e-10
    # The residual uses the current estimate of d, not the true one.
    p = problems["stacked"]
    assert rel_err(p.residual(model, x), p.residual(model, x, d=p.current_d())) == 0.0
    assert rel_err(p.residual(model, x), p.residual(model, x, d=p.d)) > 1e-8


@pytest.mark.slow
@pytest.mark.parametrize("embedded", [True, False])
def test_compiled_stacked_matches_nested_autograd(data_dir, embedded):
    """pde.compile=true (~15-20 s to compile on 2 CPU cores)."""
    compiled, nested = (
        AllenCahn(torch.Generator().manual_seed(0), data_dir, periodic_embedding=embedded, **kw)
        for kw in (dict(compile=True), dict(derivatives="autograd"))
    )
    g = torch.Generator().manual_seed(6)
    model = MODELS["mlp"](g, compiled.n_features)
    x = compiled.sample_domain(300, g)
    for _ in range(2):  # the second call runs the cached compiled graph
        loss_c = sum(compiled.losses(model, x).values())
        grads_c = torch.autograd.grad(loss_c, list(model.parameters()))
    loss_n = sum(nested.losses(model, x).values())
    assert rel_err(loss_c, loss_n) < 1e-10
    for a, b in zip(grads_c, torch.autograd.grad(loss_n, list(model.parameters()))):
        assert rel_err(a, b) < 1e-10


# --- causal weights ------------------------------------------------------------------------


def test_causal_weights_are_exp_or_exactly_zero():
    e = [0.0, 1.0, 50.0, CAUSAL_CUTOFF, CAUSAL_CUTOFF + 1e-9, 700.0, 1e5]
    e = torch.tensor(e, dtype=torch.float64)
    w = causal_weights(e)
    np.testing.assert_array_equal(w[:4].numpy(), torch.exp(-e[:4]).numpy())
    assert (w[4:] == 0).all()


def test_causal_cutoff_keeps_the_loss_and_avoids_subnormal_gradients(data_dir):
    """With slab exponents spread over 0 .. 1500, some plain weights exp(-eps * past) are
    subnormal, and so are the per-point gradients they scale: the cut-off changes the pde loss
    and its gradient by far less than 1e-12 relative, and leaves no subnormal gradient."""
    gen = torch.Generator().manual_seed(7)
    x = torch.stack([torch.rand(4000, generator=gen, dtype=torch.float64)] * 2, 1)
    r0 = 1 + torch.rand(len(x), generator=gen, dtype=x.dtype)
    chunks = 32
    chunk = torch.clamp((x[:, 0] * chunks).long(), max=chunks - 1)

    def slabs(r):  # mean squared residual per time slab, as the problem computes it
        sums = torch.zeros(chunks, dtype=r.dtype).index_add(0, chunk, r**2)
        return sums / torch.bincount(chunk, minlength=chunks).clamp(min=1)

    past = torch.cumsum(slabs(r0), 0) - slabs(r0)
    eps = 1500.0 / float(past[-1])
    p = AllenCahn(gen, data_dir, causal_eps=eps, causal_chunks=chunks, derivatives="autograd")

    def previous(r):  # the loss before the cut-off
        slab = slabs(r)
        past = torch.cumsum(slab.detach(), 0) - slab.detach()
        return (torch.exp(-eps * past) * slab).mean()

    def loss_and_grad(loss_fn):
        r = r0.clone().requires_grad_(True)
        loss = loss_fn(r)
        loss.backward()
        return loss.detach(), r.grad

    loss_new, grad_new = loss_and_grad(lambda r: p._pde_loss(x, r))
    loss_old, grad_old = loss_and_grad(previous)
    tiny = torch.finfo(torch.float64).tiny
    assert ((grad_old != 0) & (grad_old.abs() < tiny)).any()  # the case the cut-off is for
    assert not ((grad_new != 0) & (grad_new.abs() < tiny)).any()
    assert abs(float(loss_new - loss_old)) <= 1e-12 * float(loss_old)
    assert rel_err(grad_new, grad_old) < 1e-12
