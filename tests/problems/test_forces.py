"""Drag and lift by a surface integral on the DFG cylinder (Schaefer & Turek 1996): the
divergence theorem on analytic fields, signs, spectral convergence, gradients, and the
finite-element reference flow against its volume-form coefficients and the DFG values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pinn_exp.problems.forces import (
    DP_POINTS,
    cylinder_quadrature,
    force_coefficients,
    pressure_difference,
)
from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS
from pinn_exp.reference.navier_stokes import (
    DFG_2D1,
    NavierStokesReference,
    drag_lift_dp,
)
from pinn_exp.reference.navier_stokes_cache import load_or_build_navier_stokes

F64 = torch.float64
D = 2 * CYLINDER_RADIUS
CENTER_ND = torch.tensor(CYLINDER_CENTER, dtype=F64) / D
DISK_AREA = math.pi * 0.5**2  # non-dimensional: radius 1/2
INV_RE = 0.37  # arbitrary, so that pressure and viscous stress both matter


def _field(xy: torch.Tensor) -> torch.Tensor:
    """A smooth (entire) non-solenoidal field ``(u*, v*, p*)`` of the non-dimensional
    coordinates; the frequencies 5 and 4 make the trapezoid error visible at small n."""
    x, y = xy.unbind(1)
    u = torch.sin(5 * x) * torch.cos(4 * y) + x**2 * y
    v = torch.exp(0.3 * x) * torch.sin(4 * y) - x * y**2
    p = torch.cos(5 * x + 2 * y) + x * y**2
    return torch.stack([u, v, p], 1)


def _field_and_gradient(xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``y`` (n, 3) and ``dy`` (n, 2, 3) with ``dy[:, k] = dy/dx*_k``, by autograd."""
    xy = xy.detach().requires_grad_(True)
    y = _field(xy)
    dy = torch.stack(
        [torch.autograd.grad(y[:, c].sum(), xy, retain_graph=True)[0] for c in range(3)], 2
    )
    return y.detach(), dy


def _surface(n: int, field=_field_and_gradient, inv_re: float = INV_RE) -> torch.Tensor:
    """(cD, cL) of ``field`` by the function under test."""
    points, normals, weights = cylinder_quadrature(n)
    y, dy = field(points / D)
    return torch.stack(force_coefficients(y, dy, normals, weights, inv_re))


def _volume(inv_re: float = INV_RE, n_r: int = 40, n_theta: int = 128) -> torch.Tensor:
    """``2 int_disk div sigma* dA`` by Gauss-Legendre in r times the trapezoid rule in theta,
    with ``div sigma*_i = -dp*/dx_i + inv_re (lap u*_i + d(div u*)/dx_i)`` by autograd."""
    nodes, gauss_w = np.polynomial.legendre.leggauss(n_r)
    r = torch.tensor(0.25 * (nodes + 1), dtype=F64)  # [-1, 1] -> [0, 1/2]
    theta = torch.arange(n_theta, dtype=F64) * (2 * math.pi / n_theta)
    rr, tt = torch.meshgrid(r, theta, indexing="ij")
    xy = CENTER_ND + torch.stack([rr * torch.cos(tt), rr * torch.sin(tt)], -1).reshape(-1, 2)
    dr = torch.tensor(0.25 * gauss_w, dtype=F64)
    dA = (dr * r * (2 * math.pi / n_theta)).repeat_interleave(n_theta)  # r dr dtheta
    xy.requires_grad_(True)
    y = _field(xy)

    def grad(f: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(f.sum(), xy, create_graph=True)[0]

    gu, gv, gp = grad(y[:, 0]), grad(y[:, 1]), grad(y[:, 2])
    divergence = gu[:, 0] + gv[:, 1]
    lap = torch.stack([grad(g[:, 0])[:, 0] + grad(g[:, 1])[:, 1] for g in (gu, gv)], 1)
    div_sigma = -gp + inv_re * (lap + grad(divergence))
    return 2 * (div_sigma.detach() * dA[:, None]).sum(0)


# ------------------------------------------------------------------------------ quadrature


def test_quadrature_nodes_normals_and_weights():
    points, normals, weights = cylinder_quadrature(12)
    assert points.shape == (12, 2) and normals.shape == (12, 2) and weights.shape == (12,)
    assert points.dtype == normals.dtype == weights.dtype == F64
    centre = torch.tensor(CYLINDER_CENTER, dtype=F64)
    torch.testing.assert_close(points, centre + CYLINDER_RADIUS * normals, rtol=0, atol=1e-15)
    torch.testing.assert_close(normals.norm(dim=1), torch.ones(12, dtype=F64))
    # Into the fluid: theta = 0 is the rear stagnation point, theta = pi the front one.
    torch.testing.assert_close(points[0], torch.tensor(DP_POINTS[1]), rtol=0, atol=1e-15)
    torch.testing.assert_close(points[6], torch.tensor(DP_POINTS[0]), rtol=0, atol=1e-15)
    torch.testing.assert_close(normals[0], torch.tensor([1.0, 0.0], dtype=F64))
    torch.testing.assert_close(weights.sum(), torch.tensor(math.pi, dtype=F64))  # pi * D*
    assert cylinder_quadrature(16, dtype=torch.float32)[0].dtype == torch.float32


@pytest.mark.parametrize("n", [7, 0, -8, 8.0, True, "16", None])
def test_quadrature_rejects_bad_n(n):
    with pytest.raises(ValueError, match=rf"n must be an integer >= 8, got {n!r}"):
        cylinder_quadrature(n)


# ---------------------------------------------------------------------------- coefficients


def test_divergence_theorem_on_an_analytic_field():
    expected = _volume()
    assert expected.abs().min() > 0.1  # a non-trivial check
    torch.testing.assert_close(_surface(64), expected, rtol=0, atol=1e-10)
    # The volume side has converged: a coarser 2-D rule agrees.
    torch.testing.assert_close(_volume(n_r=30, n_theta=96), expected, rtol=0, atol=1e-12)


def test_trapezoid_converges_spectrally():
    expected = _volume()
    errors = [float((_surface(n) - expected).abs().max()) for n in (8, 16, 24, 32)]
    # Geometric, not algebraic: each 8 more nodes win orders of magnitude (an O(n^-2) rule
    # would gain a factor 4, then 2.25, then 1.8).
    assert errors[0] > 1e-3
    assert errors[1] < 1e-3 * errors[0] and errors[2] < 1e-3 * errors[1]
    assert errors[3] < 1e-12


def test_pressure_signs():
    def pressure(p_of_xy):
        def field(xy):
            y = torch.zeros(xy.shape[0], 3, dtype=F64)
            y[:, 2] = p_of_xy(xy)
            dy = torch.full((xy.shape[0], 2, 3), 123.0, dtype=F64)  # ignored for p
            dy[:, :, :2] = 0
            return y, dy

        return field

    zero = torch.zeros(2, dtype=F64)
    torch.testing.assert_close(_surface(32, pressure(lambda xy: 7 + 0 * xy[:, 0])), zero)
    # p* = x*: the higher pressure at the rear pushes the body upstream, F*_x = -|disk|.
    cd, cl = _surface(32, pressure(lambda xy: xy[:, 0]))
    torch.testing.assert_close(cd, torch.tensor(-2 * DISK_AREA, dtype=F64))
    torch.testing.assert_close(cl, torch.tensor(0.0, dtype=F64), rtol=0, atol=1e-14)
    cd, cl = _surface(32, pressure(lambda xy: xy[:, 1]))
    torch.testing.assert_close(cl, torch.tensor(-2 * DISK_AREA, dtype=F64))


def test_gradients_flow_to_inputs_and_inv_re():
    torch.manual_seed(0)
    _, normals, weights = cylinder_quadrature(8)
    y = torch.randn(8, 3, dtype=F64, requires_grad=True)
    dy = torch.randn(8, 2, 3, dtype=F64, requires_grad=True)
    inv_re = torch.tensor(0.05, dtype=F64, requires_grad=True)
    torch.autograd.gradcheck(
        lambda a, b, c: force_coefficients(a, b, normals, weights, c), (y, dy, inv_re)
    )
    # Float and 0-d tensor inv_re agree; d cD / d inv_re is the viscous part.
    cd, _ = force_coefficients(y, dy, normals, weights, inv_re)
    cd_float, _ = force_coefficients(y, dy, normals, weights, 0.05)
    torch.testing.assert_close(cd, cd_float)
    viscous, _ = force_coefficients(torch.zeros_like(y), dy, normals, weights, 1.0)
    torch.testing.assert_close(torch.autograd.grad(cd, inv_re)[0], viscous.detach())
    # dtype follows the inputs.
    f32 = [t.detach().float() for t in (y, dy, normals, weights)]
    assert force_coefficients(*f32, 0.05)[0].dtype == torch.float32


def test_shape_errors_name_the_argument():
    _, normals, weights = cylinder_quadrature(8)
    y, dy = torch.zeros(8, 3, dtype=F64), torch.zeros(8, 2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"dy must have shape \(8, 2, 3\), got \(8, 3, 2\)"):
        force_coefficients(y, dy.transpose(1, 2), normals, weights, 0.1)
    with pytest.raises(ValueError, match=r"weights must have shape \(8,\)"):
        force_coefficients(y, dy, normals, weights[:4], 0.1)
    with pytest.raises(ValueError, match=r"y must have shape"):
        force_coefficients(y[:, :2], dy, normals, weights, 0.1)


# ------------------------------------------------------------------ finite-element reference

# Velocity gradients by central differences of step H, centred OFFSET inside the fluid along
# the normal so the whole stencil is in the fluid (the P2 field's gradient is linear in each
# cell, so the offset costs O(OFFSET / cell size); 1e-7 m vs cells of ~1e-3 m at the wall).
OFFSET, H = 1e-7, 5e-8
N_FE = 2048


def _fe_coefficients(ref: NavierStokesReference) -> tuple[float, float, float]:
    """(cD, cL, dp) of the interpolated FE field by the surface integral, in the
    non-dimensional variables of the PINN (lengths / D, velocity / U_mean, p / U_mean^2)."""
    points, normals, weights = cylinder_quadrature(N_FE)
    x = (points + OFFSET * normals).numpy()
    u_mean = 2 * ref.u_max / 3
    scale = np.array([u_mean, u_mean, u_mean**2])
    y = ref.evaluate(x) / scale
    dy = np.stack([ref.evaluate(x + H * e) - ref.evaluate(x - H * e) for e in np.eye(2)], 1)
    dy *= D / (2 * H * scale)
    cd, cl = force_coefficients(torch.tensor(y), torch.tensor(dy), normals, weights, 1 / ref.re)
    p_front, p_rear = torch.tensor(ref.evaluate(DP_POINTS)[:, 2] / u_mean**2)
    return float(cd), float(cl), float(pressure_difference(p_front, p_rear, u_mean))


def _rel(value: float, exact: float) -> float:
    return abs(value - exact) / abs(exact)


def _reference(tmp_path_factory, re: float, u_max: float, refinement: int):
    path = tmp_path_factory.getbasetemp() / f"ns_re{re:g}_r{refinement}.h5"
    return load_or_build_navier_stokes(
        path, re=re, u_max=u_max, length=2.2, refinement=refinement, log=lambda _: None
    )


def test_fe_reference_dfg_2d1_coarse(tmp_path_factory):
    """DFG 2D-1 (Re = 20) on refinement 2 (~2 s). Measured relative deviations of the surface
    integral: cD 4.9e-4 from the volume form and 5.4e-4 from DFG; cL 3.3e-2 and 3.4e-2. The
    surface form differentiates the P2 velocity and takes the P1 pressure on the wall, so it
    converges at the rate of the traces (O(h^2)) rather than of the energy error squared; the
    small cL (0.2 % of cD) magnifies the same absolute error. Tolerances: about twice that."""
    ref = _reference(tmp_path_factory, DFG_2D1["re"], DFG_2D1["u_max"], 2)
    cd, cl, dp = _fe_coefficients(ref)
    cd_vol, cl_vol, dp_vol = drag_lift_dp(ref)
    assert _rel(cd, cd_vol) < 1e-3 and _rel(cd, DFG_2D1["cd"]) < 1e-3
    assert _rel(cl, cl_vol) < 6e-2 and _rel(cl, DFG_2D1["cl"]) < 6e-2
    assert dp == pytest.approx(dp_vol, rel=1e-13)


@pytest.mark.slow
def test_fe_reference_converges(tmp_path_factory):
    """Refinement 4 at Re = 20 and refinement 3 of the steady Re = 100 branch (~25 s; no
    published steady values, so only our volume form). Measured relative deviations from the
    volume form: Re = 20: cD 6.9e-5, cL 8.6e-3 (DFG: 7.3e-5, 8.6e-3; refinement 3: 1.6e-4,
    1.5e-2); Re = 100: cD 2.0e-4, cL 6.3e-3 (refinement 2: 8.6e-4, 1.6e-2). Tolerances: about
    twice that."""
    ref = _reference(tmp_path_factory, DFG_2D1["re"], DFG_2D1["u_max"], 4)
    cd, cl, _ = _fe_coefficients(ref)
    cd_vol, cl_vol, _ = drag_lift_dp(ref)
    assert _rel(cd, cd_vol) < 1.5e-4 and _rel(cd, DFG_2D1["cd"]) < 1.5e-4
    assert _rel(cl, cl_vol) < 2e-2 and _rel(cl, DFG_2D1["cl"]) < 2e-2
    ref = _reference(tmp_path_factory, 100.0, 1.5, 3)
    cd, cl, _ = _fe_coefficients(ref)
    cd_vol, cl_vol, _ = drag_lift_dp(ref)
    assert cd_vol == pytest.approx(2.942, abs=1e-3) and cl_vol < 0
    assert _rel(cd, cd_vol) < 5e-4 and _rel(cl, cl_vol) < 1.5e-2
