"""Exact boundary conditions of the stream-function PINN (psi = g + phi^2 N) and the batched
forward pass of the Navier-Stokes loss terms."""

from __future__ import annotations

import math

import pytest
import torch

from pinn_exp.jets import multi_indices
from pinn_exp.models import MLP, SIREN
from pinn_exp.problems.navier_stokes import NavierStokes
from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS, DIAMETER, HEIGHT

F64 = torch.float64


def hard_problem(tmp_path, **kwargs) -> NavierStokes:
    return NavierStokes(
        torch.Generator().manual_seed(0), tmp_path, formulation="stream", hard_bc=True, **kwargs
    )


def random_boundary_points(n: int, seed: int, length: float = 2.2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(4, n, generator=g, dtype=F64)
    theta = 2 * math.pi * u[2]
    return {
        "inlet": torch.stack([torch.zeros(n, dtype=F64), HEIGHT * u[0]], 1),
        "walls": torch.stack([length * u[1], HEIGHT * (u[3] > 0.5).to(F64)], 1),
        "cylinder": torch.stack(
            [
                CYLINDER_CENTER[0] + CYLINDER_RADIUS * torch.cos(theta),
                CYLINDER_CENTER[1] + CYLINDER_RADIUS * torch.sin(theta),
            ],
            1,
        ),
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("model_cls", [MLP, SIREN])
@pytest.mark.parametrize("derivatives", ["stacked", "autograd"])
def test_boundary_conditions_hold_to_rounding_for_random_weights(
    tmp_path, seed, model_cls, derivatives
):
    problem = hard_problem(tmp_path, derivatives=derivatives)
    model = model_cls(2, 2, generator=torch.Generator().manual_seed(seed), width=16, depth=3)
    # Random weights far from any trained state: the output is O(1) and varies.
    for p in model.parameters():
        p.data.mul_(3.0)
    pts = random_boundary_points(200, seed)
    s = pts["inlet"][:, 1] / HEIGHT
    expected = {"inlet": torch.stack([6 * s * (1 - s), 0 * s], 1)}
    for name, x in pts.items():
        y, dy, _ = problem.outputs_and_derivatives(model, x, order=1)
        target = expected.get(name, torch.zeros(len(x), 2, dtype=F64))
        assert (y[:, :2] - target).abs().max() < 1e-12, name
    # psi itself: the inflow's integral on inlet and walls, one constant on the cylinder.
    psi = {n: problem._fields(model, x, 0)[3].detach() for n, x in pts.items()}
    h = HEIGHT / DIAMETER
    s_in = pts["inlet"][:, 1] / HEIGHT
    torch.testing.assert_close(psi["inlet"], h * s_in**2 * (3 - 2 * s_in), rtol=0, atol=1e-12)
    top = pts["walls"][:, 1] > 0
    assert psi["walls"][~top].abs().max() < 1e-12
    assert (psi["walls"][top] - h).abs().max() < 1e-12
    c = float(problem.cylinder_stream(model))
    assert (psi["cylinder"] - c).abs().max() < 1e-12
    # The constraint is not vacuous: inside the fluid, the velocity is the network's business.
    x = problem.sample_domain(200, torch.Generator().manual_seed(seed))
    other = model_cls(2, 2, generator=torch.Generator().manual_seed(seed + 10), width=16, depth=3)
    y1 = problem.outputs_and_derivatives(model, x, 0)[0]
    y2 = problem.outputs_and_derivatives(other, x, 0)[0]
    assert (y1 - y2)[:, :2].abs().max() > 1e-2


def test_composed_partials_match_autograd_of_the_composite_function(tmp_path):
    """Leibniz's rule against nested autograd of psi = A + b c + W N, written out directly."""
    problem = hard_problem(tmp_path, derivatives="autograd")
    model = MLP(2, 2, generator=torch.Generator().manual_seed(3), width=12, depth=2)
    x = problem.sample_domain(64, torch.Generator().manual_seed(4))
    got = problem._partials(model, x, 3)
    c = problem.cylinder_stream(model)
    xy = (x / DIAMETER).clone().requires_grad_(True)
    a, b, w = problem.constraint.fields(xy)
    psi = a + b * c + w * model(problem.features(xy * DIAMETER))[:, 0]
    want = {(): psi}
    for index in multi_indices(2, 3)[1:]:
        grad = torch.autograd.grad(want[index[:-1]].sum(), xy, create_graph=True)[0]
        want[index] = grad[:, index[-1]]
    for index in multi_indices(2, 3):
        torch.testing.assert_close(got[index][:, 0], want[index], rtol=1e-10, atol=1e-10)


def test_hard_terms_are_the_residuals_and_the_outlet_and_train_the_cylinder_value(tmp_path):
    problem = hard_problem(tmp_path)
    model = MLP(2, 2, generator=torch.Generator().manual_seed(0), width=16, depth=3)
    x = problem.sample_domain(300, torch.Generator().manual_seed(1))
    terms = problem.losses(model, x)
    assert list(terms) == ["momentum_x", "momentum_y", "outlet"]
    total = sum(terms.values())
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # The cylinder's stream value starts near the inflow's at the centre's height (~1.97).
    assert abs(float(problem.cylinder_stream(model)) - 1.97) < 2.0


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"formulation": "velocity", "hard_bc": True}, "pde.formulation=stream"),
        ({"formulation": "stream", "hard_bc": "yes"}, "pde.hard_bc"),
        ({"formulation": "stream", "hard_bc": True, "blend_radius": 3.0}, "pde.blend_radius"),
        ({"formulation": "stream", "hard_bc": True, "blend_radius": 0.4}, "pde.blend_radius"),
    ],
)
def test_bad_hard_bc_arguments_name_the_key(tmp_path, kwargs, key):
    with pytest.raises(ValueError, match=key):
        NavierStokes(torch.Generator().manual_seed(0), tmp_path, **kwargs)


@pytest.mark.parametrize("formulation", ["velocity", "stream"])
def test_losses_equal_per_set_evaluation(tmp_path, formulation):
    """The loss terms are the residuals at x and each fixed set's own terms."""
    problem = NavierStokes(torch.Generator().manual_seed(0), tmp_path, formulation=formulation)
    model = MLP(2, problem.out_dim, generator=torch.Generator().manual_seed(1), width=16, depth=3)
    x = problem.sample_domain(200, torch.Generator().manual_seed(2))
    batched = problem.losses(model, x)
    r = problem.residual_components(model, x)
    separate = {name: (r[:, i] ** 2).mean() for i, name in enumerate(problem.residual_terms)}
    at = {name: list(problem._fields(model, pts, 1)) for name, pts in problem.loss_points().items()}
    separate |= problem.point_terms(at)
    assert list(batched) == list(separate)
    for name in batched:
        torch.testing.assert_close(batched[name], separate[name], rtol=1e-12, atol=1e-15)


def test_geometry_jets_match_nested_autograd_near_the_cylinder_and_inlet(tmp_path):
    """The closed-form jets of (1 - b) psi_in, b and phi^2 against nested autograd of
    ``fields``, on points in the blend ring around the cylinder and near the inlet and walls."""
    constraint = hard_problem(tmp_path).constraint
    g = torch.Generator().manual_seed(5)
    r = 0.5 + 1.2 * torch.rand(300, generator=g, dtype=F64)  # the blend ring: r in [0.5, 1.7]
    theta = 2 * math.pi * torch.rand(300, generator=g, dtype=F64)
    ring = torch.stack([2 + r * torch.cos(theta), 2 + r * torch.sin(theta)], 1)
    edge = torch.rand(200, 2, generator=g, dtype=F64) * torch.tensor([0.3, 4.1], dtype=F64)
    xy = torch.cat([ring, edge])
    got = constraint.partials(xy, 3)
    leaf = xy.clone().requires_grad_(True)
    want = {(): torch.stack(constraint.fields(leaf), 1)}
    for index in multi_indices(2, 3)[1:]:
        parent = want[index[:-1]]
        cols = [
            torch.autograd.grad(parent[:, j].sum(), leaf, create_graph=True)[0][:, index[-1]]
            for j in range(3)
        ]
        want[index] = torch.stack(cols, 1)
    for index in multi_indices(2, 3):
        torch.testing.assert_close(got[index], want[index].detach(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("formulation", ["velocity", "stream"])
def test_joint_momentum_is_the_sum_of_the_split_terms(tmp_path, formulation):
    kwargs = dict(formulation=formulation)
    split = NavierStokes(torch.Generator().manual_seed(0), tmp_path, **kwargs)
    joint = NavierStokes(torch.Generator().manual_seed(0), tmp_path, momentum="joint", **kwargs)
    model = MLP(2, split.out_dim, generator=torch.Generator().manual_seed(1), width=16, depth=3)
    x = split.sample_domain(100, torch.Generator().manual_seed(2))
    a, b = split.losses(model, x), joint.losses(model, x)
    assert joint.residual_terms[0] == "momentum" and list(b)[0] == "momentum"
    torch.testing.assert_close(b["momentum"], a["momentum_x"] + a["momentum_y"])
    assert set(a) - {"momentum_x", "momentum_y"} == set(b) - {"momentum"}
    with pytest.raises(ValueError, match="pde.momentum"):
        NavierStokes(torch.Generator().manual_seed(0), tmp_path, momentum="both")
