"""Steady Navier-Stokes cylinder reference (DFG benchmark, Schaefer & Turek 1996)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import h5py
import numpy as np
import pytest

from pinn_exp.reference.cache import CHECKSUM_ATTR, checksum
from pinn_exp.reference.mesh import (
    CYLINDER_CENTER,
    CYLINDER_RADIUS,
    HEIGHT,
    LENGTH,
    channel_cylinder_mesh,
)
from pinn_exp.reference.navier_stokes import (
    DFG_2D1,
    NavierStokesReference,
    drag_lift_dp,
    eval_grid,
    solve_navier_stokes,
)
from pinn_exp.reference.navier_stokes_cache import load_or_build_navier_stokes

CX, CY = CYLINDER_CENTER
R = CYLINDER_RADIUS
# Small and fast: the cache tests only need some valid solution.
TINY = {"re": 20.0, "u_max": 0.3, "refinement": 1, "re_steps": (), "eval_spacing": 0.05}


def _rel(value: float, exact: float) -> float:
    return abs(value - exact) / abs(exact)


@pytest.fixture(scope="module")
def dfg_coarse() -> tuple[NavierStokesReference, list[str]]:
    lines: list[str] = []
    ref = solve_navier_stokes(
        re=DFG_2D1["re"], u_max=DFG_2D1["u_max"], refinement=2, re_steps=(), log=lines.append
    )
    return ref, lines


@pytest.fixture(scope="module")
def re100() -> NavierStokesReference:
    return solve_navier_stokes(re=100.0, refinement=1, log=lambda _: None)


# ----------------------------------------------------------------------------------- mesh


def test_mesh_tags_every_boundary_facet_and_curves_the_cylinder():
    mesh = channel_cylinder_mesh(1, length=1.5)
    tagged = np.concatenate([mesh.boundaries[k] for k in ("inlet", "outlet", "walls", "cylinder")])
    assert np.array_equal(np.sort(tagged), np.sort(mesh.boundary_facets()))
    ends = mesh.p[:, mesh.facets[:, mesh.boundaries["cylinder"]]]
    mids = mesh.doflocs[:, mesh.nvertices + mesh.boundaries["cylinder"]]
    np.testing.assert_allclose(np.hypot(ends[0] - CX, ends[1] - CY), R, rtol=1e-14)
    np.testing.assert_allclose(np.hypot(mids[0] - CX, mids[1] - CY), R, rtol=1e-14)
    assert mesh.boundaries["cylinder"].size == 40
    np.testing.assert_allclose(mesh.p[0].max(), 1.5)
    # The DFG pressure points are vertices.
    vx, vy = mesh.doflocs[:, : mesh.nvertices]
    for point in ([0.15, 0.2], [0.25, 0.2]):
        assert np.min(np.hypot(vx - point[0], vy - point[1])) < 1e-15
    # Same arguments, same mesh.
    again = channel_cylinder_mesh(1, length=1.5)
    assert np.array_equal(again.doflocs, mesh.doflocs) and np.array_equal(again.t, mesh.t)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"refinement": 0}, "refinement"),
        ({"refinement": 1.5}, "refinement"),
        ({"refinement": True}, "refinement"),
        ({"length": 0.3}, "length"),
        ({"wall_grading": 0.5}, "wall_grading"),
    ],
)
def test_mesh_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        channel_cylinder_mesh(**kwargs)


# ---------------------------------------------------------------------------------- solver


def test_dfg_2d1_on_a_coarse_mesh(dfg_coarse):
    ref, lines = dfg_coarse
    cd, cl, dp = drag_lift_dp(ref)
    # Measured at refinement 2: 4.8e-5, 8.8e-4, 2.4e-3.
    assert _rel(cd, DFG_2D1["cd"]) < 1e-3
    assert _rel(cl, DFG_2D1["cl"]) < 1e-2
    assert _rel(dp, DFG_2D1["dp"]) < 1e-2
    assert any("converged" in line for line in lines)
    assert ref.nu == pytest.approx(0.2 * 0.1 / 20.0, rel=1e-15)


def test_boundary_conditions_hold_at_the_nodes(dfg_coarse):
    ref, _ = dfg_coarse
    x, y = ref.nodes.T
    inlet = np.abs(x) < 1e-12
    walls = (np.abs(y) < 1e-12) | (np.abs(y - HEIGHT) < 1e-12)
    cylinder = np.abs(np.hypot(x - CX, y - CY) - R) < 1e-12
    assert inlet.sum() > 10 and walls.sum() > 50 and cylinder.sum() == 2 * 80
    profile = 4 * ref.u_max * y[inlet] * (HEIGHT - y[inlet]) / HEIGHT**2
    np.testing.assert_allclose(ref.u[inlet], profile, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ref.v[inlet], 0.0, atol=1e-14)
    for mask in (walls, cylinder):
        np.testing.assert_allclose(ref.u[mask], 0.0, atol=1e-14)
        np.testing.assert_allclose(ref.v[mask], 0.0, atol=1e-14)
    # Through evaluate(), between the nodes too (P2 reproduces the parabola exactly).
    ys = np.linspace(0, HEIGHT, 37)
    vals = ref.evaluate(np.stack([np.zeros_like(ys), ys], 1))
    np.testing.assert_allclose(
        vals[:, 0], 4 * ref.u_max * ys * (HEIGHT - ys) / HEIGHT**2, atol=1e-14
    )
    # Mass conservation: the outflow equals the inflow 2/3 U_m H (to discretisation error).
    yo = np.linspace(0, HEIGHT, 801)
    flux = np.trapezoid(ref.evaluate(np.stack([np.full_like(yo, LENGTH), yo], 1))[:, 0], yo)
    assert flux == pytest.approx(2 / 3 * ref.u_max * HEIGHT, rel=1e-4)


def test_evaluate_is_exact_for_p2_velocity_and_p1_pressure(dfg_coarse):
    ref, _ = dfg_coarse
    x, y = ref.nodes.T

    def quad(px, py):
        return 0.3 + 1.1 * px - 2.0 * py + 0.7 * px**2 - 1.3 * px * py + 2.5 * py**2

    def lin(px, py):
        return -0.4 + 0.9 * px + 1.7 * py

    field = replace(ref, u=quad(x, y), v=lin(x, y), p=lin(x, y))
    rng = np.random.default_rng(0)
    pts = rng.random((4000, 2)) * [LENGTH, HEIGHT]
    pts = pts[np.hypot(pts[:, 0] - CX, pts[:, 1] - CY) > R]
    cell, _ = field.locator.locate(pts)
    straight = ~field.locator.curved[cell]
    assert straight.sum() > 3000 and (~straight).sum() < straight.sum()
    got = field.evaluate(pts)
    px, py = pts.T
    # Quadratics are exact on straight cells; on curved (isoparametric) cells the P2 space holds
    # the physical linears but not the physical quadratics.
    np.testing.assert_allclose(got[straight, 0], quad(px, py)[straight], rtol=0, atol=1e-10)
    np.testing.assert_allclose(got[:, 1], lin(px, py), rtol=0, atol=1e-10)
    np.testing.assert_allclose(got[straight, 2], lin(px, py)[straight], rtol=0, atol=1e-10)
    # At the nodes, evaluate() returns the nodal values.
    np.testing.assert_allclose(ref.evaluate(ref.nodes)[:, 0], ref.u, rtol=0, atol=1e-12)


def test_eval_set_matches_evaluate_and_avoids_the_cylinder(dfg_coarse):
    ref, _ = dfg_coarse
    pts = ref.eval_points
    assert pts.shape == (eval_grid(LENGTH, 0.01).shape[0], 2)
    assert pts.shape[0] > 9000
    assert np.all(np.hypot(pts[:, 0] - CX, pts[:, 1] - CY) > R)
    assert pts[:, 0].min() == 0.0 and pts[:, 0].max() == LENGTH and pts[:, 1].max() == HEIGHT
    np.testing.assert_allclose(ref.evaluate(pts), ref.eval_values, rtol=0, atol=1e-13)
    assert not ref.eval_values.flags.writeable


def test_evaluate_rejects_points_outside_the_fluid(dfg_coarse):
    ref, _ = dfg_coarse
    for point in ([0.2, 0.2], [0.2 + 0.99 * R, 0.2], [-0.01, 0.2], [1.0, HEIGHT + 1e-6]):
        with pytest.raises(ValueError, match="fluid domain"):
            ref.evaluate(np.array([[1.0, 0.2], point]))
    with pytest.raises(ValueError, match="points must have shape"):
        ref.evaluate(np.zeros(4))


def test_re100_steady_flow_is_nearly_symmetric(re100):
    # The cylinder sits 0.005 below the channel axis, so the symmetry is only approximate:
    # measured ~10 % (v antisymmetry) and ~8 % (u symmetry) in the wake at refinement 1.
    xs, ds = np.meshgrid(np.linspace(0.3, 2.0, 60), np.linspace(0.01, 0.18, 18))
    above = re100.evaluate(np.stack([xs.ravel(), CY + ds.ravel()], 1))
    below = re100.evaluate(np.stack([xs.ravel(), CY - ds.ravel()], 1))
    v_asym = np.linalg.norm(above[:, 1] + below[:, 1]) / np.linalg.norm(above[:, 1])
    u_asym = np.linalg.norm(above[:, 0] - below[:, 0]) / np.linalg.norm(above[:, 0])
    assert v_asym < 0.2 and u_asym < 0.15
    # A recirculation bubble behind the cylinder, and a drag far above the lift.
    assert re100.evaluate(np.array([[0.3, CY]]))[0, 0] < 0
    cd, cl, _ = drag_lift_dp(re100)
    assert 2.8 < cd < 3.1 and abs(cl) < 0.05


def test_continuation_inserts_steps_when_newton_fails(re100):
    # From rest, Newton diverges at Re = 100; the solver then goes through Re = 50.
    lines: list[str] = []
    direct = solve_navier_stokes(re=100.0, refinement=1, re_steps=(), log=lines.append)
    assert any("Newton failed at Re=100" in line for line in lines)
    assert any("inserting Re=50" in line for line in lines)
    stepped = re100
    # Same solution up to the Newton tolerance (|R| <= 1e-10 leaves ~1e-9 in u).
    np.testing.assert_allclose(direct.u, stepped.u, rtol=0, atol=1e-7)
    np.testing.assert_allclose(direct.p, stepped.p, rtol=0, atol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"re": 0.0}, "re must"),
        ({"re": float("nan")}, "re must"),
        ({"u_max": -1.0}, "u_max"),
        ({"length": 0.2}, "length"),
        ({"refinement": 0}, "refinement"),
        ({"eval_spacing": 1.0}, "eval_spacing"),
        ({"tol": 0.0}, "tol"),
        ({"max_newton": 0}, "max_newton"),
        ({"re_steps": ("a",)}, "re_steps"),
        ({"re_steps": (-5.0,)}, "re_steps"),
    ],
)
def test_solver_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        solve_navier_stokes(**kwargs)


# ----------------------------------------------------------------------------------- cache


def test_cache_round_trip_and_rebuilds(tmp_path):
    path = tmp_path / "sub" / "ns.h5"
    lines: list[str] = []
    built = load_or_build_navier_stokes(path, **TINY, log=lines.append)
    assert "building" in lines[0] and "no file" in lines[0]
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["ns.h5"]
    with h5py.File(path, "r") as f:
        assert f.attrs["re"] == 20.0 and f.attrs["nu"] == pytest.approx(1e-3)
        assert f["cells"].shape[1] == 6

    lines.clear()
    cached = load_or_build_navier_stokes(path, **TINY, log=lines.append)
    assert lines == [f"navier_stokes reference: reusing {path}"]
    for name in ("nodes", "cells", "u", "v", "p", "eval_points", "eval_values"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(built, name))
    assert (cached.re, cached.u_max, cached.nu) == (built.re, built.u_max, built.nu)
    np.testing.assert_allclose(drag_lift_dp(cached), drag_lift_dp(built), rtol=1e-12)

    lines.clear()
    other = load_or_build_navier_stokes(path, **{**TINY, "re": 30.0}, log=lines.append)
    assert "building" in lines[0] and "'re'" in lines[0]
    assert other.re == 30.0 and not np.allclose(other.u, built.u)

    path.write_bytes(b"not an hdf5 file")
    lines.clear()
    load_or_build_navier_stokes(path, **TINY, log=lines.append)
    assert "building" in lines[0] and "not a readable HDF5" in lines[0]

    lines.clear()
    load_or_build_navier_stokes(path, **TINY, log=lines.append, force=True)
    assert "rebuild forced" in lines[0]


def test_cache_rejects_inconsistent_arrays(tmp_path):
    path = tmp_path / "ns.h5"
    load_or_build_navier_stokes(path, **TINY, log=lambda _: None)
    with h5py.File(path, "r+") as f:  # as a faulty writer would, with a matching checksum
        cells = f["cells"][()]
        cells[0, 0] = 10**7
        f["cells"][...] = cells
        f["cells"].attrs[CHECKSUM_ATTR] = checksum(cells)
    lines: list[str] = []
    load_or_build_navier_stokes(path, **TINY, log=lines.append)
    assert "building" in lines[0] and "out of range" in lines[0]


def test_cache_checksums_and_a_quiet_solver(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = tmp_path / "ns.h5"
    load_or_build_navier_stokes(path, **TINY)
    # scikit-fem's per-assembly INFO lines are silenced; the solver's own progress goes through
    # the pinn_exp.reference logger
    assert not [r for r in caplog.records if r.name.startswith("skfem")]
    assert any("navier_stokes: done" in r.getMessage() for r in caplog.records)
    assert logging.getLogger("skfem").level == logging.NOTSET  # restored
    with h5py.File(path, "r+") as f:
        f["v"][5] += 1e-9
    caplog.clear()
    load_or_build_navier_stokes(path, **TINY)
    (record,) = [r for r in caplog.records if "building" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "dataset 'v' does not match its checksum" in record.getMessage()
    lines: list[str] = []
    load_or_build_navier_stokes(path, **TINY, log=lines.append)
    assert lines == [f"navier_stokes reference: reusing {path}"]


def test_cache_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="refinement"):
        load_or_build_navier_stokes(tmp_path / "x.h5", refinement=-1)


# ------------------------------------------------------------------------------------ slow


@pytest.mark.slow
def test_dfg_2d1_default_mesh_meets_the_targets():
    t0 = time.perf_counter()
    ref = solve_navier_stokes(re=20.0, u_max=0.3, refinement=4, re_steps=(), log=lambda _: None)
    seconds = time.perf_counter() - t0
    cd, cl, dp = drag_lift_dp(ref)
    assert _rel(cd, DFG_2D1["cd"]) < 1e-4
    assert _rel(cl, DFG_2D1["cl"]) < 1e-2
    assert _rel(dp, DFG_2D1["dp"]) < 1e-3
    assert seconds < 60  # ~17 s on an idle 2-core machine; generous for loaded ones


@pytest.mark.slow
def test_re100_default_generation():
    t0 = time.perf_counter()
    ref = solve_navier_stokes(log=lambda _: None)
    seconds = time.perf_counter() - t0
    cd, cl, _ = drag_lift_dp(ref)
    assert ref.re == 100.0 and ref.nu == pytest.approx(1e-3)
    assert cd == pytest.approx(2.942, rel=1e-3)
    assert seconds < 120  # 33 s of CPU time at refinement 4; more on a loaded machine
