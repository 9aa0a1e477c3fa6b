"""Steady 2-D incompressible Navier-Stokes reference: flow past a cylinder (DFG benchmark).

Solves, in the DFG channel of

    M. Schaefer and S. Turek, "Benchmark computations of laminar flow around a cylinder",
    in: Flow Simulation with High-Performance Computers II, Notes on Numerical Fluid
    Mechanics 52, Vieweg, 1996, pp. 547-566,

the dimensional steady equations (density 1)

    (u . grad) u + grad p - nu lap u = 0,    div u = 0,

with the parabolic inflow ``u = 4 U_m y (H - y) / H^2, v = 0`` at x = 0, no slip on the walls
and the cylinder, and the do-nothing condition ``nu du/dn - p n = 0`` at x = L (which also fixes
the pressure level). ``Re = U_mean D / nu`` with ``U_mean = 2 U_m / 3`` and D = 0.1; the
defaults ``U_m = 1.5, Re = 100`` (nu = 1e-3) are the DFG 2D-2 setting. There the physical flow
is periodic (vortex shedding); the steady solution computed here is the symmetric-looking,
unstable steady branch, which is what the steady equations define.

This module holds the solution (:class:`NavierStokesReference`, which interpolates the
finite-element fields anywhere in the fluid), its evaluation grid, the solver and the DFG
quantities of a solution. The solver runs Newton's method with continuation in Re (from rest,
Newton at Re = 100 diverges) on the Taylor-Hood P2/P1 discretisation of
:mod:`pinn_exp.reference.taylor_hood`, on the mesh of :mod:`pinn_exp.reference.mesh`; drag and
lift come from the volume-integral form of the force (V. John 2002, see there). Solutions are
cached in HDF5 by :mod:`pinn_exp.reference.navier_stokes_cache`.

With the default mesh (refinement 4, 13920 cells, 63730 unknowns) the DFG 2D-1 values
(Re = 20) are matched to 4.4e-6 (drag), 1.7e-5 (lift) and 5.9e-4 (pressure difference),
relative; see ``scripts/dfg_validation.py``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np
from skfem import MeshTri2

from pinn_exp.reference.checks import check_float as _check_float
from pinn_exp.reference.locate import TriangleLocator, interpolate
from pinn_exp.reference.mesh import (
    CYLINDER_CENTER,
    CYLINDER_RADIUS,
    DIAMETER,
    HEIGHT,
    LENGTH,
    _check_refinement,
    channel_cylinder_mesh,
)
from pinn_exp.reference.taylor_hood import Discretisation, newton

__all__ = [
    "DFG_2D1",
    "NavierStokesReference",
    "drag_lift_dp",
    "eval_grid",
    "solve_navier_stokes",
]

# DFG 2D-1 (Re = 20, U_m = 0.3, nu = 1e-3): drag, lift, pressure difference. High-accuracy
# values from the FEATFLOW benchmark pages (featflow.de, "DFG benchmark 2D-1"), which refine
# the intervals of Schaefer & Turek (1996) (5.57-5.59, 0.0104-0.0110, 0.1172-0.1176).
DFG_2D1 = {"re": 20.0, "u_max": 0.3, "cd": 5.57953523384, "cl": 0.010618948146, "dp": 0.11752016697}
# The two points of the DFG pressure difference: front and rear stagnation points.
DP_POINTS = np.array([[0.15, 0.2], [0.25, 0.2]])
# Mesh layer clustering at the cylinder (see mesh.py); fixed because the cache depends on it.
WALL_GRADING = 1.5


@dataclass(frozen=True, eq=False)
class NavierStokesReference:
    """Steady Navier-Stokes solution on a curved P2 triangle mesh.

    ``nodes`` (n_nodes, 2) are the P2 nodes (vertices first, then edge nodes; cylinder edge
    nodes lie on the circle); ``cells`` (n_cells, 6) list them per triangle in scikit-fem's
    ``ElementTriP2`` order ``(v0, v1, v2, m01, m12, m02)``. ``u``, ``v`` are the P2 velocity
    values at the nodes; ``p`` is the P1 pressure at the nodes (its edge-node values are the
    averages of the edge's vertex values, so ``cells[:, :3]`` and ``p`` define the P1 field).
    ``eval_points`` (m, 2) is a regular grid in the fluid and ``eval_values`` (m, 3) holds
    ``(u, v, p)`` there. Arrays are read-only: one cached instance may be shared.
    (``eq=False``: comparing array fields with ``==`` would be ambiguous.)
    """

    nodes: np.ndarray
    cells: np.ndarray
    u: np.ndarray
    v: np.ndarray
    p: np.ndarray
    eval_points: np.ndarray
    eval_values: np.ndarray
    re: float
    u_max: float
    nu: float
    length: float
    height: float
    refinement: int

    def __post_init__(self) -> None:
        for name in ("nodes", "cells", "u", "v", "p", "eval_points", "eval_values"):
            view = np.asarray(getattr(self, name)).view()
            view.setflags(write=False)
            object.__setattr__(self, name, view)

    @cached_property
    def locator(self) -> TriangleLocator:
        """Point locator on the curved mesh, built on first use."""
        return TriangleLocator(self.nodes, self.cells)

    def evaluate(self, points: np.ndarray) -> np.ndarray:
        """``(u, v, p)`` (n, 3) at ``points`` (n, 2) by exact finite-element interpolation.

        Velocity is interpolated with the P2 basis and pressure with the P1 basis of the cell
        containing the point (isoparametric: curved cells are inverted exactly).

        Raises:
            ValueError: if ``points`` is not (n, 2) or a point is outside the fluid domain.
        """
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points must have shape (n, 2), got {pts.shape}")
        cell, ref = self.locator.locate(pts)
        outside = np.nonzero(cell < 0)[0]
        if outside.size:
            raise ValueError(
                f"points must lie in the fluid domain ([0, {self.length}] x [0, {self.height}] "
                f"minus the cylinder); {outside.size} do not, e.g. {pts[outside[0]].tolist()}"
            )
        out = np.empty((pts.shape[0], 3))
        out[:, :2] = interpolate(np.stack([self.u, self.v], 1), self.cells, cell, ref)
        out[:, 2] = interpolate(self.p, self.cells[:, :3], cell, ref)
        return out


def eval_grid(length: float = LENGTH, spacing: float = 0.01) -> np.ndarray:
    """Regular grid over [0, L] x [0, H] minus the closed cylinder, edges included.

    The spacing along each axis is adjusted to the nearest value that divides the side
    (``L / round(L / spacing)``), so the outer boundary lines are on the grid. Rows are ordered
    x-major (y varies fastest).
    """
    xs = np.linspace(0.0, length, max(1, round(length / spacing)) + 1)
    ys = np.linspace(0.0, HEIGHT, max(1, round(HEIGHT / spacing)) + 1)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], 1)
    cx, cy = CYLINDER_CENTER
    return pts[np.hypot(pts[:, 0] - cx, pts[:, 1] - cy) > CYLINDER_RADIUS]


def _validate(
    re: object, u_max: object, length: object, refinement: object, eval_spacing: object
) -> tuple[float, float, float, int, float]:
    re = _check_float("re", re, "a finite float > 0", lambda v: v > 0)
    u_max = _check_float("u_max", u_max, "a finite float > 0", lambda v: v > 0)
    length = _check_float("length", length, "a finite float >= 0.5", lambda v: v >= 0.5)
    refinement = _check_refinement(refinement)
    eval_spacing = _check_float(
        "eval_spacing", eval_spacing, "a finite float in [0.001, 0.1]", lambda v: 1e-3 <= v <= 0.1
    )
    return re, u_max, length, refinement, eval_spacing


def _viscosity(re: float, u_max: float) -> float:
    return (2.0 * u_max / 3.0) * DIAMETER / re


def _solve_on(
    disc: Discretisation,
    re: float,
    u_max: float,
    re_steps: Sequence[float],
    tol: float,
    max_newton: int,
    log: Callable[[str], object],
) -> np.ndarray:
    """Continuation in Re through ``re_steps`` (those below ``re``) to ``re``; returns x."""
    x = disc.boundary_values(u_max)
    targets = [float(r) for r in re_steps if float(r) < re] + [re]
    done_re = None
    halvings = 0
    while targets:
        target = targets[0]
        nu = _viscosity(target, u_max)
        t0 = time.perf_counter()
        # Intermediate solutions only seed the next step: a 1000-fold residual reduction (in
        # practice ~1e4-fold, by quadratic convergence) is plenty and saves a factorisation.
        rel_tol = 0.0 if len(targets) == 1 else 1e-3
        x_new, history, ok = newton(disc, x, nu, tol, rel_tol, max_newton)
        steps, norm = len(history) - 1, history[-1]
        if ok:
            log(
                f"navier_stokes: Re={target:g} converged in {steps} Newton steps, |R| = "
                + " -> ".join(f"{h:.1e}" for h in history)
                + f" ({time.perf_counter() - t0:.1f}s)"
            )
            x, done_re = x_new, target
            targets.pop(0)
            continue
        # A failed step is retried from the last solution via an intermediate Re.
        halvings += 1
        if halvings > 6:
            raise RuntimeError(
                f"Newton's method did not converge at Re={target:g} (|R|={norm:.1e} after "
                f"{steps} steps) even with 6 extra continuation steps; add intermediate values "
                f"to re_steps or use a finer mesh (refinement)"
            )
        mid = 0.5 * (target + (done_re if done_re is not None else 0.0))
        log(
            f"navier_stokes: Newton failed at Re={target:g} (|R|={norm:.1e} after {steps} "
            f"steps); inserting Re={mid:g}"
        )
        targets.insert(0, mid)  # x is still the last converged state (or rest)
    return x


@contextmanager
def _quiet_skfem() -> Iterator[None]:
    """scikit-fem logs an INFO line per assembly (32 on a first build, printed under Hydra's
    logging set-up): keep only its warnings while the solver runs."""
    logger = logging.getLogger("skfem")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


@_quiet_skfem()
def solve_navier_stokes(
    re: float = 100.0,
    u_max: float = 1.5,
    length: float = LENGTH,
    refinement: int = 4,
    re_steps: Sequence[float] = (30.0,),
    tol: float = 1e-10,
    max_newton: int = 25,
    eval_spacing: float = 0.01,
    log: Callable[[str], object] = print,
) -> NavierStokesReference:
    """Solve the steady DFG cylinder flow (Schaefer & Turek 1996) with P2/P1 Taylor-Hood.

    Args:
        re: Reynolds number ``U_mean D / nu`` (U_mean = 2 u_max / 3, D = 0.1), > 0; it sets
            ``nu = U_mean D / re``.
        u_max: peak inflow velocity U_m, > 0.
        length: channel length L, >= 0.5 (the DFG value is 2.2).
        refinement: mesh level in [1, 64] (see :func:`channel_cylinder_mesh`); 4 has 63730
            unknowns.
        re_steps: continuation Reynolds numbers; those below ``re`` are solved first, in the
            given order, each starting from the previous solution (the first from rest). If
            Newton fails at a step, a midpoint step is inserted automatically (at most 6
            times). From rest, Newton diverges at Re = 100 (it converged at Re = 50 on
            refinements 1 and 2); for Re = 100 at refinement 4 the default (30,) takes 4 + 5
            Newton steps, (20, 50) takes 4 + 3 + 5.
        tol: Newton stops when the l2 norm of the discrete residual (free rows) is <= tol.
        max_newton: Newton steps allowed per continuation step.
        eval_spacing: spacing of the regular evaluation grid, in [0.001, 0.1].
        log: receives one progress line per continuation step.

    Returns:
        A :class:`NavierStokesReference`.

    Raises:
        ValueError: naming the offending argument.
        RuntimeError: if Newton's method does not converge.
    """
    re, u_max, length, refinement, eval_spacing = _validate(
        re, u_max, length, refinement, eval_spacing
    )
    tol = _check_float("tol", tol, "a finite float > 0", lambda v: v > 0)
    if (
        isinstance(max_newton, bool)
        or not isinstance(max_newton, (int, np.integer))
        or max_newton < 1
    ):
        raise ValueError(f"max_newton must be an integer >= 1, got {max_newton!r}")
    try:
        steps = [float(r) for r in re_steps]
    except (TypeError, ValueError):
        steps = [math.nan]
    if not all(math.isfinite(r) and r > 0 for r in steps):
        raise ValueError(f"re_steps must be a sequence of finite floats > 0, got {re_steps!r}")

    t0 = time.perf_counter()
    mesh = channel_cylinder_mesh(refinement, length=length, wall_grading=WALL_GRADING)
    disc = Discretisation(mesh)
    log(
        f"navier_stokes: Re={re:g}, U_m={u_max:g}, nu={_viscosity(re, u_max):.3g}; mesh "
        f"refinement {refinement}: {mesh.nelements} cells, {disc.n_u + disc.n_p} unknowns"
    )
    x = _solve_on(disc, re, u_max, steps, tol, int(max_newton), log)
    ref = _reference(
        mesh.doflocs.T.copy(),
        disc.cells,
        disc.to_nodal(x),
        re,
        u_max,
        length,
        refinement,
        eval_spacing,
    )
    log(f"navier_stokes: done in {time.perf_counter() - t0:.1f}s")
    return ref


def _reference(
    nodes: np.ndarray,
    cells: np.ndarray,
    nodal: tuple[np.ndarray, np.ndarray, np.ndarray],
    re: float,
    u_max: float,
    length: float,
    refinement: int,
    eval_spacing: float,
    eval_values: np.ndarray | None = None,
) -> NavierStokesReference:
    """Assemble the reference; the evaluation values are interpolated unless given."""
    pts = eval_grid(length, eval_spacing)
    ref = NavierStokesReference(
        nodes=nodes,
        cells=cells,
        u=nodal[0],
        v=nodal[1],
        p=nodal[2],
        eval_points=pts,
        eval_values=np.zeros((pts.shape[0], 3)) if eval_values is None else eval_values,
        re=re,
        u_max=u_max,
        nu=_viscosity(re, u_max),
        length=length,
        height=HEIGHT,
        refinement=refinement,
    )
    return ref if eval_values is not None else replace(ref, eval_values=ref.evaluate(pts))


@_quiet_skfem()
def drag_lift_dp(ref: NavierStokesReference) -> tuple[float, float, float]:
    """DFG drag and lift coefficients and pressure difference of a solution.

    ``cD = 2 F_D / (U_mean^2 D)``, ``cL = 2 F_L / (U_mean^2 D)`` with the forces from the
    volume-integral form (John 2002), and ``dp = p(0.15, 0.2) - p(0.25, 0.2)`` (Schaefer &
    Turek 1996). The discretisation is rebuilt from ``ref.nodes`` and ``ref.cells``.
    """
    mesh = _mesh_from(ref)
    disc = Discretisation(mesh)
    if not np.array_equal(disc.cells, ref.cells):
        raise ValueError("ref.cells must be in scikit-fem's P2 numbering of its own mesh")
    x = disc.from_nodal(np.asarray(ref.u), np.asarray(ref.v), np.asarray(ref.p))
    cd, cl = disc.forces(x, ref.nu, ref.u_max)
    p_front, p_rear = ref.evaluate(DP_POINTS)[:, 2]
    return cd, cl, float(p_front - p_rear)


def _mesh_from(ref: NavierStokesReference) -> MeshTri2:
    """Rebuild the tagged quadratic mesh from a reference's nodes and cells."""
    mesh = MeshTri2(
        doflocs=np.ascontiguousarray(ref.nodes.T, dtype=np.float64),
        t=np.ascontiguousarray(ref.cells[:, :3].T, dtype=np.int64),
    )
    bf = mesh.boundary_facets()
    fx, fy = mesh.p[:, mesh.facets[:, bf]]  # (2, n_bf) each: both end points
    cx, cy = CYLINDER_CENTER
    tol = 1e-9
    on_circle = np.all(np.hypot(fx - cx, fy - cy) < CYLINDER_RADIUS * (1 + tol), axis=0)
    return mesh.with_boundaries(
        {
            "inlet": bf[np.all(np.abs(fx) < tol, axis=0)],
            "outlet": bf[np.all(np.abs(fx - ref.length) < tol, axis=0)],
            "walls": bf[
                np.all(np.abs(fy) < tol, axis=0) | np.all(np.abs(fy - HEIGHT) < tol, axis=0)
            ],
            "cylinder": bf[on_circle],
        }
    )
