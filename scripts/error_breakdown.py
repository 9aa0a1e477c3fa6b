"""Where an Allen-Cahn run's error lies: rel L2 overall and for t >= 0.05, the share of the
squared error before t = 0.05 and within 0.1 of x = +-1 (where u0's periodic extension has its
slope jump), and the largest pointwise error.

    python scripts/error_breakdown.py outputs/runs/<date>/<time>/prediction.h5 [...]
"""

from __future__ import annotations

import sys

import h5py
import numpy as np


def breakdown(path: str) -> str:
    with h5py.File(path) as f:
        pred, ref = f["prediction/u"][:], f["reference/u"][:]
        t, x = f["grid/t"][:], f["grid/x"][:]
    err = pred - ref
    early, edge = t < 0.05, np.abs(np.abs(x) - 1) < 0.1
    total = (err**2).sum()
    i, j = np.unravel_index(np.abs(err).argmax(), err.shape)
    late = np.linalg.norm(err[~early]) / np.linalg.norm(ref[~early])
    return (
        f"{path}: rel L2 {np.linalg.norm(err) / np.linalg.norm(ref):.3g}, for t >= 0.05 "
        f"{late:.3g}; squared error at t < 0.05: {(err[early] ** 2).sum() / total:.0%}, "
        f"within 0.1 of x = +-1: {(err[:, edge] ** 2).sum() / total:.0%}; "
        f"max |error| {np.abs(err).max():.3g} at t = {t[i]:g}, x = {x[j]:g}"
    )


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for arg in sys.argv[1:]:
        print(breakdown(arg))
