"""How precisely can noisy data identify an inverse problem's unknown? The Cramér-Rao bound.

For data y_k with independent Gaussian noise of standard deviation sigma_k, the Fisher
information about a parameter theta is ``I(theta) = sum_k (dy_k/dtheta)^2 / sigma_k^2``, and no
unbiased estimator of theta from those data has a standard deviation below ``1 / sqrt(I)``,
whatever the PINN does. Noise follows ``pinn_exp.noise.GaussianNoise``: sigma = level * std of
the clean values over the sensors (per component, unbiased std).

``allen_cahn``: how precisely can noisy snapshots identify Allen-Cahn's d? For sensors at
(t_i, x_j), ``I(d) = sum_ij (du/dd(t_i, x_j))^2 / sigma^2``. du/dd comes from our spectral
reference (central difference in d, relative step 1e-3). Sensors are laid out like the inverse
problem's: the same ``n_sensors`` random x positions at each snapshot time (a NumPy draw from
``--seed``, not the run's own draw; the bound barely depends on it). This is also what the
script does when its first argument is a flag (the invocation from before the subcommands).

    python scripts/inverse_information.py allen_cahn --level 0.1 --n-sensors 64
    python scripts/inverse_information.py allen_cahn --level 0.1 --n-sensors 512 \\
        --times 0.1 0.3 0.5 0.7 0.9

``navier_stokes``: how precisely can N noisy velocity sensors identify Re of the steady DFG
cylinder flow (``pinn_exp.problems.navier_stokes_inverse``, true Re = 100)? With sensors x_i
and components j = u, v, ``I(Re) = sum_i sum_j (du_ij/dRe)^2 / sigma_j^2``, sigma_j = level *
std_i(clean u_ij). du/dRe and dv/dRe come from a central difference of finite-element references
at Re (1 +- h), h = ``--rel-step`` (default 1e-2; at refinement 3 and 300 sensors h = 5e-3
changes the bounds by < 0.1 %, so the derivative is converged in h), built (or read) with
``load_or_build_navier_stokes`` under ``--data-dir`` with the problem's cache file names
(seconds to under a minute per Re and refinement; each is built once). Three sensor layouts,
each ``--n-sensors`` points uniform in the fluid of a region, keeping the problem's
``SENSOR_MARGIN`` from the cylinder (a NumPy draw from ``--seed``): ``uniform``, the whole
channel [0, 2.2] x [0, 0.41] (the problem's default layout); ``wake``, the problem's
``WAKE_BOX`` x in [0.25, 1.0], y in [0.1, 0.3]; ``ball``, the ball of radius 0.1 around the
cylinder centre (0.2, 0.2). One table row per (layout, level) gives sigma_Re absolute and
relative to Re, and the number of sensors of that layout for sigma_Re / Re = 1 % / 3 (a
3-sigma 1 % identification): I grows linearly with N for i.i.d. sensors, so
``N_needed = N * (sigma_rel / (1 % / 3))^2``.

At 300 sensors and 10 % noise (seed 0) the bound is std(Re)/Re >= 0.90 % (uniform), 0.52 %
(wake), 2.6 % (ball); refinements 3 and 4 agree to < 0.4 %, other seeds move it by ~15 %
(uniform: 0.75 % to 1.0 % for seeds 0-2). The ball is the worst layout per sensor: |d(u, v)/dRe|
is smaller there than in the wake, and the noise, scaled by the spread of (u, v) over the
sensors, is larger (sigma_v ~5x the other layouts').

    python scripts/inverse_information.py navier_stokes --n-sensors 300 --refinement 3
    python scripts/inverse_information.py navier_stokes --level 0.05 0.1 --rel-step 5e-3
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pinn_exp.problems.navier_stokes_inverse import SENSOR_MARGIN, WAKE_BOX
from pinn_exp.reference.allen_cahn import solve_allen_cahn
from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS, HEIGHT, LENGTH
from pinn_exp.reference.navier_stokes_cache import load_or_build_navier_stokes

SUBCOMMANDS = ("allen_cahn", "navier_stokes")
# The Navier-Stokes sensor layouts: the box each is drawn from, and for "ball" its radius.
BALL_RADIUS = 0.1
LAYOUTS = ("uniform", "wake", "ball")
# sigma_Re / Re for "a 3-sigma 1 % identification".
TARGET_RELATIVE = 0.01 / 3


def allen_cahn(args: argparse.Namespace) -> None:
    h = 1e-3 * args.d
    plus, minus = solve_allen_cahn(d=args.d + h), solve_allen_cahn(d=args.d - h)
    ref = solve_allen_cahn(d=args.d)
    times = ref.t if args.all_snapshots else args.times
    rows = [int(np.argmin(np.abs(ref.t - t))) for t in times]
    rng = np.random.default_rng(args.seed)
    cols = np.sort(rng.permutation(len(ref.x))[: args.n_sensors])
    dudd = (plus.u - minus.u)[np.ix_(rows, cols)] / (2 * h)
    clean = ref.u[np.ix_(rows, cols)]
    sigma = args.level * clean.std()
    info = float((dudd**2).sum() / sigma**2)
    bound = 1 / np.sqrt(info)
    print(
        f"d = {args.d:g}, {len(rows)} snapshots x {len(cols)} sensors, noise {args.level:.0%} "
        f"(sigma = {sigma:.3g})"
    )
    print(f"Cramer-Rao bound: std(d) >= {bound:.3g} = {bound / args.d:.2%} of d")
    rms = np.sqrt((dudd**2).mean())
    print(f"|du/dd| over the sensors: max {np.abs(dudd).max():.3g}, rms {rms:.3g}")


def sensor_points(layout: str, n: int, rng: np.random.Generator, length: float) -> np.ndarray:
    """``n`` points uniform in the fluid part of the layout's region, each farther than
    ``CYLINDER_RADIUS + SENSOR_MARGIN`` from the cylinder centre (rejection sampling)."""
    centre = np.asarray(CYLINDER_CENTER)
    if layout == "uniform":
        lo, hi = np.array([0.0, 0.0]), np.array([length, HEIGHT])
    elif layout == "wake":
        (x0, x1), (y0, y1) = WAKE_BOX
        lo, hi = np.array([x0, y0]), np.array([min(x1, length), y1])
    elif layout == "ball":
        lo, hi = centre - BALL_RADIUS, centre + BALL_RADIUS
    else:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    kept, count = [], 0
    while count < n:
        pts = lo + (hi - lo) * rng.random((2 * n + 16, 2))
        dist = np.linalg.norm(pts - centre, axis=1)
        keep = dist > CYLINDER_RADIUS + SENSOR_MARGIN
        if layout == "ball":
            keep &= dist <= BALL_RADIUS
        kept.append(pts[keep])
        count += int(keep.sum())
    return np.concatenate(kept)[:n]


def _reference(data_dir: Path, re: float, u_max: float, length: float, refinement: int):
    """The FE reference at ``re``, cached under the problem's file name."""
    path = data_dir / f"navier_stokes_re{re:g}_um{u_max:g}_L{length:g}_r{refinement}.h5"
    return load_or_build_navier_stokes(
        path,
        re=re,
        u_max=u_max,
        length=length,
        refinement=refinement,
        log=lambda line: print(line, file=sys.stderr),
    )


def navier_stokes_bounds(
    re: float,
    levels: Sequence[float],
    n_sensors: int,
    layouts: Sequence[str],
    seed: int,
    rel_step: float,
    refinement: int,
    data_dir: Path,
    u_max: float = 1.5,
    length: float = LENGTH,
) -> list[dict]:
    """One dict per (layout, level): the Fisher information and the Cramér-Rao bound on Re."""
    h = rel_step * re
    ref = _reference(data_dir, re, u_max, length, refinement)
    plus = _reference(data_dir, re + h, u_max, length, refinement)
    minus = _reference(data_dir, re - h, u_max, length, refinement)
    rows = []
    for layout in layouts:
        # Each layout its own stream: its sensors do not depend on which others are computed.
        rng = np.random.default_rng([seed, LAYOUTS.index(layout)])
        points = sensor_points(layout, n_sensors, rng, length)
        clean = ref.evaluate(points)[:, :2]
        duv = (plus.evaluate(points)[:, :2] - minus.evaluate(points)[:, :2]) / (2 * h)
        std = clean.std(axis=0, ddof=1)
        for level in levels:
            sigma = level * std
            info = float(((duv / sigma) ** 2).sum())
            bound = 1 / math.sqrt(info)
            rows.append(
                {
                    "layout": layout,
                    "level": level,
                    "n": n_sensors,
                    "sigma_u": float(sigma[0]),
                    "sigma_v": float(sigma[1]),
                    "info": info,
                    "sigma_re": bound,
                    "relative": bound / re,
                    "n_needed": math.ceil(n_sensors * (bound / re / TARGET_RELATIVE) ** 2),
                    "rms_du": float(np.sqrt((duv[:, 0] ** 2).mean())),
                    "rms_dv": float(np.sqrt((duv[:, 1] ** 2).mean())),
                }
            )
    return rows


def navier_stokes(args: argparse.Namespace) -> None:
    levels = args.level or [0.05, 0.1]
    layouts = args.layout or list(LAYOUTS)
    rows = navier_stokes_bounds(
        args.re,
        levels,
        args.n_sensors,
        layouts,
        args.seed,
        args.rel_step,
        args.refinement,
        Path(args.data_dir),
        args.u_max,
        args.length,
    )
    print(
        f"Re = {args.re:g}, {args.n_sensors} velocity sensors (u, v) per layout, FE refinement "
        f"{args.refinement}, dRe by central difference (h = {args.rel_step:g} Re), seed {args.seed}"
    )
    print(
        f"{'layout':<8} {'noise':>5} {'sigma_u':>8} {'sigma_v':>8} {'rms du/dRe':>10} "
        f"{'rms dv/dRe':>10} {'I(Re)':>10} {'std(Re) >=':>10} {'rel.':>8} {'N for 1%/3':>10}"
    )
    for r in rows:
        print(
            f"{r['layout']:<8} {r['level']:>5.0%} {r['sigma_u']:>8.3g} {r['sigma_v']:>8.3g} "
            f"{r['rms_du']:>10.3g} {r['rms_dv']:>10.3g} {r['info']:>10.4g} "
            f"{r['sigma_re']:>10.4g} {r['relative']:>8.3%} {r['n_needed']:>10d}"
        )
    print(
        "N for 1%/3: sensors of that layout for std(Re)/Re = 1 % / 3 (a 3-sigma 1 % "
        "identification), from I proportional to N"
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2, got {text}")
    return value


def _level(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _rel_step(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and 0 < value < 0.5):
        raise argparse.ArgumentTypeError(f"must be a number in (0, 0.5), got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = top.add_subparsers(dest="command", required=True)

    ac = sub.add_parser("allen_cahn", help="the bound on Allen-Cahn's d")
    ac.add_argument("--d", type=float, default=1e-4)
    ac.add_argument("--level", type=float, default=0.1, help="0.1 = 10 %% noise")
    ac.add_argument("--n-sensors", type=int, default=64, help="per snapshot, of 512")
    ac.add_argument("--times", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    ac.add_argument("--all-snapshots", action="store_true", help="all 201 times in [0, 1]")
    ac.add_argument("--seed", type=int, default=0)
    ac.set_defaults(func=allen_cahn)

    ns = sub.add_parser("navier_stokes", help="the bound on the DFG cylinder flow's Re")
    ns.add_argument("--re", type=float, default=100.0, help="the true Re")
    ns.add_argument(
        "--level",
        type=_level,
        nargs="+",
        action="extend",
        help="noise levels, a list and/or repeated (default 0.05 0.1; 0.1 = 10 %% noise)",
    )
    ns.add_argument("--n-sensors", type=_positive_int, default=300, help="per layout")
    ns.add_argument(
        "--layout",
        choices=LAYOUTS,
        nargs="+",
        action="extend",
        help=f"sensor layouts (default all: {' '.join(LAYOUTS)})",
    )
    ns.add_argument("--seed", type=int, default=0)
    ns.add_argument("--rel-step", type=_rel_step, default=1e-2, help="h of Re (1 +- h)")
    ns.add_argument("--refinement", type=int, default=3, help="FE mesh level (4: the problem's)")
    ns.add_argument("--data-dir", default="data", help="where the FE references are cached")
    ns.add_argument("--u-max", type=float, default=1.5)
    ns.add_argument("--length", type=float, default=LENGTH)
    ns.set_defaults(func=navier_stokes)
    return top


def with_command(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``allen_cahn`` put first when it starts with a flag other than ``-h`` (or
    is empty): the invocation from before the subcommands."""
    argv = list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "allen_cahn")
    return argv


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(with_command(sys.argv[1:] if argv is None else argv))
    args.func(args)


if __name__ == "__main__":
    main()
