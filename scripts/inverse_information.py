"""How precisely can noisy snapshots identify Allen-Cahn's d? The Cramér-Rao bound of the data.

For sensors at (t_i, x_j) with Gaussian noise of standard deviation sigma, the Fisher information
about d is ``I(d) = sum_ij (du/dd(t_i, x_j))^2 / sigma^2`` and no unbiased estimator of d from
those data has a standard deviation below ``1 / sqrt(I(d))``, whatever the PINN does. du/dd comes
from our spectral reference (central difference in d, relative step 1e-3). Noise follows
``pinn_exp.noise.GaussianNoise``: sigma = level * std(clean values over the sensors). Sensors are
laid out like the inverse problem's: the same ``n_sensors`` random x positions at each snapshot
time (a NumPy draw from ``--seed``, not the run's own draw; the bound barely depends on it).

    python scripts/inverse_information.py --level 0.1 --n-sensors 64
    python scripts/inverse_information.py --level 0.1 --n-sensors 512 --times 0.1 0.3 0.5 0.7 0.9
"""

from __future__ import annotations

import argparse

import numpy as np

from pinn_exp.reference.allen_cahn import solve_allen_cahn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--d", type=float, default=1e-4)
    parser.add_argument("--level", type=float, default=0.1, help="0.1 = 10 %% noise")
    parser.add_argument("--n-sensors", type=int, default=64, help="per snapshot, of 512")
    parser.add_argument("--times", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    parser.add_argument("--all-snapshots", action="store_true", help="all 201 times in [0, 1]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()
