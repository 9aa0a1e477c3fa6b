"""Build (or reuse) a cached reference solution and print a summary.

Usage::

    python scripts/make_reference.py allen_cahn --out data/allen_cahn.h5 [--d 1e-4] [--k 5]
        [--n 512] [--dt 1e-4] [--force]
    python scripts/make_reference.py allen_cahn --compare 512 1024 2048   # its own error
    python scripts/make_reference.py navier_stokes --out data/ns.h5 [--re 100] [--refinement 4]

One subcommand per problem; every subcommand gets ``--out`` (default ``data/<problem>.h5``)
and ``--force``. To add a problem, write an ``add_<problem>_args(parser)`` for its own
parameters and a ``build_<problem>(args) -> dict`` (returning summary entries) and register
both in ``PROBLEMS``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from pinn_exp.reference.allen_cahn import load_or_build_allen_cahn, solve_allen_cahn
from pinn_exp.reference.navier_stokes import drag_lift_dp
from pinn_exp.reference.navier_stokes_cache import load_or_build_navier_stokes


def add_allen_cahn_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--d", type=float, default=1e-4, help="diffusion coefficient")
    parser.add_argument("--k", type=float, default=5.0, help="reaction rate")
    parser.add_argument("--n", type=int, default=512, help="number of grid points")
    parser.add_argument("--dt", type=float, default=1e-4, help="ETDRK4 time step")
    parser.add_argument("--t-end", type=float, default=1.0, help="final time")
    parser.add_argument("--n-snapshots", type=int, default=201, help="stored time levels")
    parser.add_argument(
        "--compare",
        type=int,
        nargs="+",
        metavar="N",
        help="instead: solve at each n (nested grids) and print each one's rel L2 difference "
        "from the finest, on the coarsest grid (the reference's own error)",
    )


def build_allen_cahn(args: argparse.Namespace) -> dict[str, Any]:
    if args.compare:
        return compare_allen_cahn(args)
    ref = load_or_build_allen_cahn(
        args.out,
        d=args.d,
        k=args.k,
        n=args.n,
        dt=args.dt,
        t_end=args.t_end,
        n_snapshots=args.n_snapshots,
        force=args.force,
    )
    return {
        "u shape (t, x)": ref.u.shape,
        "t range": (float(ref.t[0]), float(ref.t[-1])),
        "x range": (float(ref.x[0]), float(ref.x[-1])),
        "u min/max": (float(np.min(ref.u)), float(np.max(ref.u))),
        "d, k": (ref.d, ref.k),
    }


def compare_allen_cahn(args: argparse.Namespace) -> dict[str, Any]:
    ns = sorted(args.compare)
    refs = {n: solve_allen_cahn(d=args.d, k=args.k, n=n, dt=args.dt, t_end=args.t_end) for n in ns}
    finest = refs[ns[-1]].u[:, :: ns[-1] // ns[0]]
    out = {}
    for n in ns[:-1]:
        u = refs[n].u[:, :: n // ns[0]]
        out[f"rel L2, n={n} vs n={ns[-1]}"] = float(
            np.linalg.norm(u - finest) / np.linalg.norm(finest)
        )
    return out


def add_navier_stokes_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--re", type=float, default=100.0, help="Reynolds number U_mean D / nu")
    parser.add_argument("--u-max", type=float, default=1.5, help="peak inflow velocity U_m")
    parser.add_argument("--length", type=float, default=2.2, help="channel length")
    parser.add_argument("--refinement", type=int, default=4, help="mesh level")


def build_navier_stokes(args: argparse.Namespace) -> dict[str, Any]:
    ref = load_or_build_navier_stokes(
        args.out,
        re=args.re,
        u_max=args.u_max,
        length=args.length,
        refinement=args.refinement,
        force=args.force,
    )
    c_d, c_l, dp = drag_lift_dp(ref)
    return {
        "nodes, cells": (len(ref.nodes), len(ref.cells)),
        "evaluation points": len(ref.eval_points),
        "Re, U_m, nu": (ref.re, ref.u_max, ref.nu),
        "drag, lift, dp": (c_d, c_l, dp),
    }


# problem name -> (add its arguments, build it and return summary entries)
PROBLEMS: dict[
    str,
    tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], dict]],
] = {
    "allen_cahn": (add_allen_cahn_args, build_allen_cahn),
    "navier_stokes": (add_navier_stokes_args, build_navier_stokes),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="problem", required=True, metavar="PROBLEM")
    for name, (add_args, _) in PROBLEMS.items():
        p = sub.add_parser(name, help=f"reference solution for {name}")
        p.add_argument("--out", default=f"data/{name}.h5", help="HDF5 file to write or reuse")
        p.add_argument("--force", action="store_true", help="rebuild even if a valid cache exists")
        add_args(p)
    args = parser.parse_args(argv)

    _, build = PROBLEMS[args.problem]
    start = time.perf_counter()
    try:
        summary = build(args)
    except ValueError as exc:
        parser.error(str(exc))
    elapsed = time.perf_counter() - start
    print(f"{args.problem}: {args.out}")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    print(f"  time: {elapsed:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
