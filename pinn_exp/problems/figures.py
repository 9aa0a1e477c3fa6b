"""Figures of scattered 2-D fields: prediction, reference and error side by side."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from matplotlib.tri import Triangulation  # noqa: E402

from pinn_exp.problems.base import Evaluation  # noqa: E402
from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS  # noqa: E402


def scattered_figure(evaluation: Evaluation, fields: tuple[str, ...]):
    """Prediction, reference and |error| of each field on the scattered evaluation points
    (filled contours of their Delaunay triangulation, cylinder masked and drawn)."""
    xy = evaluation.coords
    tri = Triangulation(xy[:, 0], xy[:, 1])
    centroids = xy[tri.triangles].mean(axis=1)
    tri.set_mask(np.hypot(*(centroids - np.array(CYLINDER_CENTER)).T) < CYLINDER_RADIUS)
    # A fixed layout and few ticks: constrained layout and tick text made this figure cost
    # seconds per evaluation.
    fig, axes = plt.subplots(
        len(fields), 3, figsize=(16, 1.8 * len(fields)), sharex=True, sharey=True, squeeze=False
    )
    fig.subplots_adjust(left=0.04, right=0.97, bottom=0.1, top=0.93, wspace=0.08, hspace=0.35)
    for row, name in zip(axes, fields):
        pred, ref = evaluation.prediction[name], evaluation.reference[name]
        lo, hi = min(pred.min(), ref.min()), max(pred.max(), ref.max())
        levels = np.linspace(lo, hi if hi > lo else lo + 1e-12, 21)
        panels = [
            (pred, f"PINN {name}", levels, "RdBu_r"),
            (ref, f"reference {name}", levels, "RdBu_r"),
            (np.abs(pred - ref), f"|error| {name}", 21, "viridis"),
        ]
        for ax, (data, title, lv, cmap) in zip(row, panels):
            im = ax.tricontourf(tri, data, levels=lv, cmap=cmap)
            ax.add_patch(plt.Circle(CYLINDER_CENTER, CYLINDER_RADIUS, fc="white", ec="black"))
            ax.set_title(title, fontsize=9)
            ax.set_aspect("equal")
            fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01, ticks=MaxNLocator(3))
    for ax in axes[-1]:
        ax.set_xlabel("x")
    for ax in axes[:, 0]:
        ax.set_ylabel("y")
    return fig
