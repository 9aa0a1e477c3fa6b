"""Validate the Navier-Stokes reference solver against the DFG 2D-1 benchmark.

Solves the steady DFG 2D-1 case (Re = 20, U_m = 0.3, nu = 1e-3; Schaefer & Turek 1996) on
several mesh levels and prints, per level and quantity, the computed value, the reference
value (FEATFLOW high-accuracy values), the relative error, the mesh size (cells, cylinder edge
length), the number of unknowns and the wall-clock solve time.

Usage::

    python scripts/dfg_validation.py                 # levels 1 2 3 4
    python scripts/dfg_validation.py --levels 2 4 6
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS
from pinn_exp.reference.navier_stokes import DFG_2D1, drag_lift_dp, solve_navier_stokes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4])
    args = parser.parse_args()

    header = (
        f"{'level':>5} {'cells':>7} {'h_cyl':>8} {'DOFs':>7} {'time':>7}  "
        f"{'quantity':<8} {'computed':>15} {'reference':>15} {'rel. error':>10}"
    )
    print(header)
    print("-" * len(header))
    for level in args.levels:
        t0 = time.perf_counter()
        ref = solve_navier_stokes(
            re=DFG_2D1["re"], u_max=DFG_2D1["u_max"], refinement=level, re_steps=(), log=_quiet
        )
        seconds = time.perf_counter() - t0
        cd, cl, dp = drag_lift_dp(ref)
        n_cells = ref.cells.shape[0]
        n_vertices = int(ref.cells[:, :3].max()) + 1
        dofs = 2 * ref.nodes.shape[0] + n_vertices
        # Cylinder edge length: the circle carries one vertex and one edge node per edge.
        cx, cy = CYLINDER_CENTER
        n_cyl = np.sum(np.abs(np.hypot(*(ref.nodes - [cx, cy]).T) - CYLINDER_RADIUS) < 1e-12) // 2
        h_cyl = 2 * math.pi * CYLINDER_RADIUS / n_cyl
        for name, value in (("cD", cd), ("cL", cl), ("dp", dp)):
            exact = DFG_2D1[name.lower()]
            rel = abs(value - exact) / abs(exact)
            print(
                f"{level:>5} {n_cells:>7} {h_cyl:>8.2e} {dofs:>7} {seconds:>6.1f}s  "
                f"{name:<8} {value:>15.10f} {exact:>15.10f} {rel:>10.2e}"
            )


def _quiet(_: str) -> None:
    pass


if __name__ == "__main__":
    main()
