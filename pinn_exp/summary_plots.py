"""The plots of a sweep summary (``pinn_exp.summary``), from the runs' TensorBoard scalars.

Curves have one line per configuration and a band over its completed seeds. Each seed's
``(x, value)`` points are interpolated linearly onto a common grid (the union of the seeds' x
values) and never extrapolated past the seed's own range; at each grid point the line is the mean
over the seeds covering it and the band their min..max (``aggregate``). The line is solid where
every seed covers the point, dotted where only some do (e.g. past the end of the fastest seed
against wall time).

- ``error_vs_step.png``: ``eval/rel_l2`` against the step;
- ``error_vs_time.png``: ``eval/rel_l2`` against the run's wall time ``eval/wall_time_s``, each
  seed interpolated in time, so that optimizers of different step cost compare;
- ``alignment_vs_step.png`` and ``conflict_vs_step.png``: ``align/score`` and
  ``grad/conflict_fraction`` (``summary.DIAGNOSTICS``); configurations that never logged the tag
  are left out (``summary.diagnostic_notes`` says which), no file when none did;
- ``final_error.png``: mean with std error bars, seeds as dots, one panel per error metric;
- ``unknown_<name>.png`` for inverse problems: ``unknown/<name>`` against ``<name>_true``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pinn_exp.summary import DIAGNOSTICS, SCALAR_PREFIXES, error_metrics, load_scalars
from pinn_exp.summary_runs import HEADLINE, Group, _finite, group_label, varying_columns


# --- aggregation over seeds --------------------------------------------------------------------
@dataclass(frozen=True)
class Band:
    """Seeds aggregated on a common grid: arrays of one length, one entry per grid point."""

    x: np.ndarray
    mean: np.ndarray
    std: np.ndarray  # sample std (ddof = 1); nan where a single seed covers the point
    lo: np.ndarray
    hi: np.ndarray
    count: np.ndarray  # how many seeds cover the point


def aggregate(
    curves: Sequence[tuple[Sequence[float], Sequence[float]]], grid: Sequence[float] | None = None
) -> Band | None:
    """Mean, std, min and max over ``curves`` (one ``(x, y)`` per seed) on a common grid.

    Non-finite points are dropped; each curve is interpolated linearly onto ``grid`` (default:
    the union of the curves' x values) inside its own x range only, and every statistic at a grid
    point is over the curves covering it. Grid points no curve covers are dropped; None when no
    curve has a finite point.
    """
    cleaned = []
    for x, y in curves:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        keep = np.isfinite(x) & np.isfinite(y)
        order = np.argsort(x[keep], kind="stable")
        if order.size:
            cleaned.append((x[keep][order], y[keep][order]))
    if not cleaned:
        return None
    if grid is None:
        grid = np.unique(np.concatenate([x for x, _ in cleaned]))
    grid = np.asarray(grid, dtype=float)
    table = np.full((len(cleaned), grid.size), np.nan)
    for row, (x, y) in zip(table, cleaned):
        inside = (grid >= x[0]) & (grid <= x[-1])
        row[inside] = np.interp(grid[inside], x, y)
    covered = np.isfinite(table)
    keep = covered.any(axis=0)
    if not keep.any():
        return None
    table, covered, grid = table[:, keep], covered[:, keep], grid[keep]
    count = covered.sum(axis=0)
    mean = np.where(covered, table, 0.0).sum(axis=0) / count
    squares = np.where(covered, (table - mean) ** 2, 0.0).sum(axis=0)
    std = np.where(count > 1, np.sqrt(squares / np.maximum(count - 1, 1)), np.nan)
    lo = np.where(covered, table, np.inf).min(axis=0)
    hi = np.where(covered, table, -np.inf).max(axis=0)
    return Band(x=grid, mean=mean, std=std, lo=lo, hi=hi, count=count)


def seed_curves(
    group: Group, scalars: dict[Path, dict], tag: str, x_tag: str | None = None
) -> list[tuple[list[float], list[float]]]:
    """``(x, value)`` of ``tag`` for each completed seed that logged it; x is the step, or the
    value of ``x_tag`` at the same step (e.g. the wall time)."""
    curves = []
    for run in group.by_status("completed"):
        logged = scalars.get(run.path, {})
        if tag not in logged:
            continue
        steps, values = logged[tag]
        if x_tag is None:
            curves.append((list(steps), list(values)))
        elif x_tag in logged:
            at = dict(zip(*logged[x_tag]))
            pairs = [(at[s], v) for s, v in zip(steps, values) if s in at]
            if pairs:
                curves.append(([x for x, _ in pairs], [v for _, v in pairs]))
    return curves


# --- plots -------------------------------------------------------------------------------------
def _colors(n: int):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _curve_plot(
    groups,
    scalars,
    tag,
    columns,
    path,
    ylabel,
    true=None,
    log=True,
    x_tag=None,
    xlabel=None,
    bounds=None,
) -> bool:
    """One line per group: ``tag`` against the step, or against ``x_tag`` (each seed's own value
    at the same step, e.g. its wall time), mean over the seeds with a min..max band. ``bounds``:
    the y range the quantity can take (its axis limits, with a line at 0 inside them)."""
    import matplotlib.pyplot as plt

    many = len(groups) > 6  # legend outside, on the right
    fig, ax = plt.subplots(figsize=(12 if many else 8, 5))
    lows, partial = [], False
    for group, color in zip(groups, _colors(len(groups))):
        curves = seed_curves(group, scalars, tag, x_tag)
        band = aggregate(curves)
        if band is None:
            continue
        full = band.count == len(curves)
        label = f"{group_label(group, columns)} (n={len(curves)})"
        ax.plot(band.x, np.where(full, band.mean, np.nan), color=color, label=label)
        if not full.all():  # the dotted part joins the solid one: widen it by a point each side
            part = ~full
            part = part | np.r_[part[1:], False] | np.r_[False, part[:-1]]
            ax.plot(band.x, np.where(part, band.mean, np.nan), color=color, linestyle=":")
            partial = True
        ax.fill_between(band.x, band.lo, band.hi, color=color, alpha=0.15, linewidth=0)
        lows.append(band.lo.min())
    if not lows:
        plt.close(fig)
        return False
    if true is not None and _finite(true):
        ax.axhline(true, color="black", linestyle="--", linewidth=1, label=f"true = {true:.4g}")
    if log and min(lows) > 0:
        ax.set_yscale("log")
    if bounds is not None:
        pad = 0.03 * (bounds[1] - bounds[0])
        ax.set_ylim(bounds[0] - pad, bounds[1] + pad)
        if bounds[0] < 0 < bounds[1]:
            ax.axhline(0.0, color="gray", linewidth=0.8)
    title = f"{ylabel}: mean over seeds, band = min..max"
    if partial:
        title += "; dotted: not every seed"
    xlabel = xlabel or ("step" if x_tag is None else x_tag.split("/", 1)[-1])
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="both", alpha=0.3)
    if many:
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _bar_plot(groups, rows, metrics, columns, path) -> bool:
    import matplotlib.pyplot as plt

    metrics = [m for m in metrics if any(_finite(r[f"{m}_mean"]) for r in rows)]
    if not metrics:
        return False
    # One panel per metric, stacked, sharing the configuration axis.
    fig, axes = plt.subplots(
        len(metrics),
        1,
        figsize=(max(6, 0.5 * len(rows) + 3), 3.2 * len(metrics) + 1.5),
        sharex=True,
        squeeze=False,
    )
    x = np.arange(len(rows))
    colors = _colors(len(rows))
    for ax, metric in zip(axes[:, 0], metrics):
        means = np.array([r[f"{metric}_mean"] for r in rows], dtype=float)
        stds = np.nan_to_num(np.array([r[f"{metric}_std"] for r in rows], dtype=float))
        ax.bar(x, np.nan_to_num(means), yerr=stds, color=colors, capsize=4, alpha=0.8)
        for i, group in enumerate(groups):
            seeds = [r.metrics.get(metric) for r in group.by_status("completed")]
            seeds = [v for v in seeds if _finite(v)]
            ax.scatter([i] * len(seeds), seeds, color="black", s=10, zorder=3)
            bad = [f"{rows[i][k]} {k}" for k in ("diverged", "failed") if rows[i][k]]
            if bad:
                ax.annotate(
                    "\n".join(bad),
                    (i, 0),
                    xycoords=("data", "axes fraction"),
                    xytext=(0, 3),
                    textcoords="offset points",
                    ha="center",
                    fontsize=7,
                    color="red",
                )
        finite = means[np.isfinite(means)]
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
            ax.set_yscale("log")
        ax.set(ylabel=metric, title=f"final {metric}: mean ± std, dots = seeds")
        ax.grid(True, axis="y", alpha=0.3)
    labels = [group_label(g, columns) for g in groups]
    axes[-1, 0].set_xticks(x, labels, rotation=40, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def make_plots(
    root: Path, groups: list[Group], rows: list[dict], scalars: dict[Path, dict] | None = None
) -> list[Path]:
    """Write the PNGs into ``root``; return those written. ``scalars``: ``{run path: {tag:
    (steps, values)}}`` of the completed runs (read from their event files when None)."""
    import matplotlib

    matplotlib.use("Agg")
    runs = [r for g in groups for r in g.runs]
    columns = varying_columns(groups)
    if scalars is None:
        scalars = {
            r.path: load_scalars(r.path, SCALAR_PREFIXES) if r.status == "completed" else {}
            for r in runs
        }
    written = []

    def curve(name: str, tag: str, ylabel: str, **options) -> None:
        if _curve_plot(groups, scalars, tag, columns, root / name, ylabel, **options):
            written.append(root / name)

    curve("error_vs_step.png", f"eval/{HEADLINE}", HEADLINE)
    time = {"x_tag": "eval/wall_time_s", "xlabel": "wall time (s)"}
    curve("error_vs_time.png", f"eval/{HEADLINE}", HEADLINE, **time)
    metrics = [m for m in error_metrics(runs) if not m.endswith("_pred")]
    path = root / "final_error.png"
    if _bar_plot(groups, rows, metrics, columns, path):
        written.append(path)
    for d in DIAGNOSTICS:
        curve(d.plot, d.tag, d.label, log=False, bounds=d.bounds)
    tags = sorted({t for s in scalars.values() for t in s if t.startswith("unknown/")})
    for tag in tags:
        name = tag.split("/", 1)[1]
        trues = [r.metrics.get(f"{name}_true") for r in runs if r.metrics]
        true = next((t for t in trues if _finite(t)), None)
        curve(f"unknown_{name}.png", tag, name, true=true)
    return written
