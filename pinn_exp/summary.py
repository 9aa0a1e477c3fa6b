"""A sweep folder -> one row per configuration (seeds grouped): summary.md, summary.csv, plots.

A run is a folder holding ``.hydra/overrides.yaml`` or ``metrics.json`` (the output contract of
``run.train``). Runs whose overrides are equal once the keys Hydra leaves out of the sweep folder
name (``hydra.job.config.override_dirname.exclude_keys``: seed, data_dir, ...) are dropped belong
to one configuration. Per configuration:

- ``n``: completed runs with a finite ``rel_l2``; every mean and std is over these (the std is
  the sample standard deviation, ddof = 1; empty when n < 2);
- ``diverged``: status ``diverged`` (or a non-finite ``rel_l2``): excluded from the means, counted;
- ``failed``: no ``metrics.json`` (the run crashed or was killed) or any other status;
- errors: ``rel_l2`` and, for inverse problems, every ``<name>_rel_error`` and ``<name>_pred``;
  ``rel_l2_<field>`` and ``<name>_true`` go to the CSV only;
- ``step_time_ms``: median over the runs that wrote metrics (a step costs the same whether or not
  the run later diverges); ``wall_time_s``: mean over the n completed runs.

Plots (PNG, from the TensorBoard events): ``error_vs_step.png`` (``eval/rel_l2``, mean over
seeds with min-max band), ``error_vs_time.png`` (the same against the mean wall time,
``eval/wall_time_s``, so that optimizers of different step cost compare), ``final_error.png``
(mean with std error bars, seeds as dots, one panel per error metric) and, for inverse
problems, ``unknown_<name>.png`` (``unknown/<name>`` against its true value ``<name>_true``).
"""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

# conf/config.yaml's exclude_keys; used when a run has no .hydra/hydra.yaml to read them from.
DEFAULT_EXCLUDE = ("seed", "resume", "output_dir", "data_dir", "progress")
HEADLINE = "rel_l2"
SUMMARY_MD, SUMMARY_CSV = "summary.md", "summary.csv"


# --- reading runs ------------------------------------------------------------------------------
@dataclass
class Run:
    path: Path
    overrides: dict[str, str]  # every task override as given, key without its +/++/~ prefix
    config_key: tuple[tuple[str, str], ...]  # overrides minus the excluded keys (seed, ...)
    seed: int | None
    metrics: dict | None  # None: no metrics.json

    @property
    def status(self) -> str:
        """``completed``, ``diverged`` or ``failed``."""
        if self.metrics is None:
            return "failed"
        status = self.metrics.get("status")
        if status == "diverged":
            return "diverged"
        if status != "completed":
            return "failed"
        return "completed" if _finite(self.metrics.get(HEADLINE)) else "diverged"


def parse_overrides(lines: list[str]) -> dict[str, str]:
    """``["+experiment=a", "balancer=ema"]`` -> ``{"experiment": "a", "balancer": "ema"}``."""
    out = {}
    for line in lines:
        key, _, value = str(line).partition("=")
        out[key.lstrip("+~")] = value
    return out


def _yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _exclude_keys(run_dir: Path) -> set[str]:
    hydra_cfg = _yaml(run_dir / ".hydra" / "hydra.yaml") or {}
    try:
        keys = hydra_cfg["hydra"]["job"]["config"]["override_dirname"]["exclude_keys"]
    except (KeyError, TypeError):
        keys = DEFAULT_EXCLUDE
    return {*keys, "seed"}


def load_run(run_dir: Path) -> Run:
    run_dir = Path(run_dir)
    overrides = parse_overrides(_yaml(run_dir / ".hydra" / "overrides.yaml") or [])
    exclude = _exclude_keys(run_dir)
    config_key = tuple((k, v) for k, v in overrides.items() if k not in exclude)
    seed = overrides.get("seed")
    if seed is None:
        for name in (".hydra/config.yaml", "config.yaml"):
            cfg = _yaml(run_dir / name)
            if isinstance(cfg, dict) and "seed" in cfg:
                seed = cfg["seed"]
                break
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else None
    return Run(
        path=run_dir,
        overrides=overrides,
        config_key=config_key,
        seed=int(seed) if seed is not None else None,
        metrics=metrics,
    )


def find_runs(root: Path) -> list[Run]:
    """Every run folder under ``root`` (``root`` itself included), hidden folders skipped."""
    root = Path(root)
    found = set()
    for marker in ("metrics.json", ".hydra/overrides.yaml"):
        for path in root.rglob(marker):
            run_dir = path.parent.parent if marker.startswith(".hydra") else path.parent
            rel = run_dir.relative_to(root).parts
            if not any(part.startswith(".") for part in rel):
                found.add(run_dir)
    return [load_run(p) for p in sorted(found)]


# --- grouping and statistics -------------------------------------------------------------------
@dataclass
class Group:
    key: tuple[tuple[str, str], ...]
    runs: list[Run] = field(default_factory=list)

    @property
    def choices(self) -> dict[str, str]:
        return dict(self.key)

    def by_status(self, status: str) -> list[Run]:
        return [r for r in self.runs if r.status == status]


def _natural(value: str):
    """Sort key: numbers by value, text alphabetically (``8 < 16``, ``ema < none``)."""
    return [(0, float(t), "") if _is_number(t) else (1, 0.0, t) for t in re.split(r"[,\s]", value)]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def group_runs(runs: list[Run]) -> list[Group]:
    """Runs that differ only in the excluded keys (seed, ...) form one group, sorted by choice."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        groups.setdefault(run.config_key, Group(run.config_key)).runs.append(run)
    for group in groups.values():
        group.runs.sort(key=lambda r: (r.seed is None, r.seed or 0, str(r.path)))
    columns = choice_columns(list(groups.values()))
    return sorted(groups.values(), key=lambda g: [_natural(g.choices.get(c, "")) for c in columns])


def choice_columns(groups: list[Group]) -> list[str]:
    """Override keys in order of first appearance."""
    columns: dict[str, None] = {}
    for group in groups:
        columns.update(dict.fromkeys(group.choices))
    return list(columns)


def varying_columns(groups: list[Group]) -> list[str]:
    """The keys whose value differs between groups (all keys if none does)."""
    columns = choice_columns(groups)
    varying = [c for c in columns if len({g.choices.get(c) for g in groups}) > 1]
    return varying or columns


def fixed_choices(groups: list[Group]) -> dict[str, str]:
    varying = set(varying_columns(groups)) if len(groups) > 1 else set()
    columns = [c for c in choice_columns(groups) if c not in varying]
    return {c: groups[0].choices[c] for c in columns if all(c in g.choices for g in groups)}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1); nan where undefined."""
    values = [float(v) for v in values if _finite(v)]
    mean = statistics.fmean(values) if values else math.nan
    std = statistics.stdev(values) if len(values) > 1 else math.nan
    return mean, std


def error_metrics(runs: list[Run]) -> list[str]:
    """``rel_l2``, then every ``*_rel_error``, then every ``*_pred`` found in any run."""
    keys = {k for r in runs if r.metrics for k in r.metrics}
    rel = sorted(k for k in keys if k.endswith("_rel_error"))
    pred = sorted(k for k in keys if k.endswith("_pred"))
    return [HEADLINE, *rel, *pred]


def extra_metrics(runs: list[Run]) -> list[str]:
    """CSV-only columns: per-field errors ``rel_l2_<field>`` and true values ``<name>_true``."""
    keys = {k for r in runs if r.metrics for k in r.metrics}
    return sorted(k for k in keys if k.startswith(f"{HEADLINE}_")) + sorted(
        k for k in keys if k.endswith("_true")
    )


def summarize_groups(groups: list[Group]) -> tuple[list[str], list[dict]]:
    """One row per group: choices, n/diverged/failed, mean/std of each metric, timing."""
    runs = [r for g in groups for r in g.runs]
    choices = choice_columns(groups)
    errors, extras = error_metrics(runs), extra_metrics(runs)
    rows = []
    for group in groups:
        good = group.by_status("completed")
        ran = [r for r in group.runs if r.metrics is not None]
        row: dict = {c: group.choices.get(c, "") for c in choices}
        row |= {
            "n": len(good),
            "diverged": len(group.by_status("diverged")),
            "failed": len(group.by_status("failed")),
            "seeds": " ".join(str(r.seed) for r in good),
        }
        for metric in errors + [m for m in extras if not m.endswith("_true")]:
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(
                [r.metrics.get(metric) for r in good]
            )
        for metric in (m for m in extras if m.endswith("_true")):
            values = [r.metrics[metric] for r in ran if _finite(r.metrics.get(metric))]
            row[metric] = values[0] if values else math.nan
        times = [r.metrics.get("step_time_ms") for r in ran]
        times = [t for t in times if _finite(t)]
        row["step_time_ms_median"] = statistics.median(times) if times else math.nan
        row["wall_time_s_mean"] = mean_std([r.metrics.get("wall_time_s") for r in good])[0]
        row["folder"] = _common_folder([r.path for r in group.runs])
        rows.append(row)
    return choices, rows


def _common_folder(paths: list[Path]) -> str:
    parents = {p.parent for p in paths}
    return str(parents.pop()) if len(parents) == 1 else str(paths[0])


# --- writing -----------------------------------------------------------------------------------
def _num(x: float) -> str:
    """A time: 1234, 12.3, 0.0123."""
    if not _finite(x):
        return ""
    return format(x, ".0f" if abs(x) >= 100 else ".1f" if abs(x) >= 1 else ".3g")


def _pm(mean: float, std: float) -> str:
    if not _finite(mean):
        return "–"
    return f"{mean:.3e} ± {std:.1e}" if _finite(std) else f"{mean:.3e}"


def write_csv(path: Path, choices: list[str], rows: list[dict]) -> None:
    header = list(rows[0]) if rows else choices
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: ("" if isinstance(v, float) and not _finite(v) else v) for k, v in row.items()}
            )


def markdown_table(groups: list[Group], rows: list[dict]) -> str:
    runs = [r for g in groups for r in g.runs]
    columns, errors = varying_columns(groups), error_metrics(runs)
    errors = [m for m in errors if any(_finite(row[f"{m}_mean"]) for row in rows) or m == HEADLINE]
    means = [row[f"{HEADLINE}_mean"] for row in rows]
    best = min((m for m in means if _finite(m)), default=None) if len(rows) > 1 else None
    header = [*columns, *errors, "n", "diverged", "failed", "step ms (median)", "wall s (mean)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[c]) for c in columns]
        for metric in errors:
            cell = _pm(row[f"{metric}_mean"], row[f"{metric}_std"])
            if metric == HEADLINE and best is not None and row[f"{metric}_mean"] == best:
                cell = f"**{cell}**"
            cells.append(cell)
        cells += [str(row["n"]), str(row["diverged"]), str(row["failed"])]
        cells += [_num(row["step_time_ms_median"]), _num(row["wall_time_s_mean"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(root: Path, groups: list[Group], rows: list[dict], plots: list[Path]) -> str:
    runs = [r for g in groups for r in g.runs]
    fixed = fixed_choices(groups)
    trues = {k: row[k] for row in rows for k in row if k.endswith("_true") and _finite(row[k])}
    parts = [f"# Sweep summary: {root}", ""]
    parts.append(
        f"{len(runs)} runs in {len(groups)} configurations; errors are mean ± std (ddof = 1) "
        "over the n completed runs; diverged runs are counted, not averaged; failed = no "
        "metrics.json (crashed or killed) or an unknown status. **Bold**: lowest mean rel_l2."
    )
    if fixed:
        parts += ["", "Common to every row: " + ", ".join(f"`{k}={v}`" for k, v in fixed.items())]
    if trues:
        parts += ["", "True values: " + ", ".join(f"`{k} = {v:.6g}`" for k, v in trues.items())]
    parts += ["", markdown_table(groups, rows), ""]
    parts += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(parts).rstrip() + "\n"


# --- TensorBoard scalars and plots -------------------------------------------------------------
def load_scalars(run_dir: Path, prefixes: tuple[str, ...] = ("eval/", "unknown/")) -> dict:
    """``{tag: (steps, values)}`` for the scalar tags starting with a prefix; the last value per
    step wins (a resumed run logs some steps twice)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    guidance = {"scalars": 0, "images": 1, "tensors": 1, "histograms": 1, "audio": 1}
    acc = EventAccumulator(str(run_dir), size_guidance=guidance)
    acc.Reload()
    out = {}
    for tag in acc.Tags().get("scalars", []):
        if tag.startswith(prefixes):
            by_step = {e.step: e.value for e in acc.Scalars(tag)}
            steps = sorted(by_step)
            out[tag] = (steps, [by_step[s] for s in steps])
    return out


def _seed_curves(group: Group, scalars: dict[Path, dict], tag: str):
    """Steps, mean, min, max over the group's completed seeds (each step over the seeds having
    it), or None."""
    curves = [scalars[r.path][tag] for r in group.by_status("completed") if tag in scalars[r.path]]
    if not curves:
        return None
    steps = sorted({s for c in curves for s in c[0]})
    table = [
        [v for c in curves for s2, v in zip(*c) if s2 == s and math.isfinite(v)] for s in steps
    ]
    keep = [i for i, vals in enumerate(table) if vals]
    steps = [steps[i] for i in keep]
    mean = [statistics.fmean(table[i]) for i in keep]
    return steps, mean, [min(table[i]) for i in keep], [max(table[i]) for i in keep]


def _label(group: Group, columns: list[str]) -> str:
    return ", ".join(f"{c}={group.choices.get(c, '')}" for c in columns) or "runs"


def _colors(n: int):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def _curve_plot(
    groups, scalars, tag, columns, path, ylabel, true=None, log=True, x_tag=None
) -> bool:
    """One curve per group of ``tag`` against the step, or against ``x_tag`` (its mean over the
    seeds at each step, e.g. the wall time)."""
    import matplotlib.pyplot as plt

    many = len(groups) > 6  # legend outside, on the right
    fig, ax = plt.subplots(figsize=(12 if many else 8, 5))
    drawn = False
    for group, color in zip(groups, _colors(len(groups))):
        curve = _seed_curves(group, scalars, tag)
        if curve is None:
            continue
        steps, mean, lo, hi = curve
        if x_tag is not None:
            xs = _seed_curves(group, scalars, x_tag)
            if xs is None:
                continue
            at = dict(zip(xs[0], xs[1]))
            keep = [i for i, s in enumerate(steps) if s in at]
            steps = [at[steps[i]] for i in keep]
            mean, lo, hi = ([v[i] for i in keep] for v in (mean, lo, hi))
        ax.plot(
            steps,
            mean,
            color=color,
            label=f"{_label(group, columns)} (n={len(group.by_status('completed'))})",
        )
        ax.fill_between(steps, lo, hi, color=color, alpha=0.15, linewidth=0)
        drawn = True
    if not drawn:
        plt.close(fig)
        return False
    if true is not None and _finite(true):
        ax.axhline(true, color="black", linestyle="--", linewidth=1, label=f"true = {true:.4g}")
    values = [v for line in ax.get_lines() for v in line.get_ydata()]
    if log and values and min(values) > 0:
        ax.set_yscale("log")
    xlabel = "step" if x_tag is None else f"{x_tag.split('/', 1)[1]} (mean over seeds)"
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{ylabel}: mean over seeds, band = min..max")
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
    import numpy as np

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
    labels = [_label(g, columns) for g in groups]
    axes[-1, 0].set_xticks(x, labels, rotation=40, ha="right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def make_plots(root: Path, groups: list[Group], rows: list[dict]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    runs = [r for g in groups for r in g.runs]
    columns = varying_columns(groups)
    scalars = {r.path: (load_scalars(r.path) if r.status == "completed" else {}) for r in runs}
    written = []
    path = root / "error_vs_step.png"
    if _curve_plot(groups, scalars, f"eval/{HEADLINE}", columns, path, HEADLINE):
        written.append(path)
    path = root / "error_vs_time.png"
    wall = "eval/wall_time_s"
    if _curve_plot(groups, scalars, f"eval/{HEADLINE}", columns, path, HEADLINE, x_tag=wall):
        written.append(path)
    metrics = [m for m in error_metrics(runs) if not m.endswith("_pred")]
    path = root / "final_error.png"
    if _bar_plot(groups, rows, metrics, columns, path):
        written.append(path)
    tags = sorted({t for s in scalars.values() for t in s if t.startswith("unknown/")})
    for tag in tags:
        name = tag.split("/", 1)[1]
        trues = [r.metrics.get(f"{name}_true") for r in runs if r.metrics]
        true = next((t for t in trues if _finite(t)), None)
        path = root / f"unknown_{name}.png"
        if _curve_plot(groups, scalars, tag, columns, path, name, true=true):
            written.append(path)
    return written


# --- the whole thing ---------------------------------------------------------------------------
def summarize(root: Path, plots: bool = True) -> str:
    """Write ``summary.md``, ``summary.csv`` (and plots) into ``root``; return the markdown."""
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run folders (.hydra/overrides.yaml or metrics.json) in {root}")
    groups = group_runs(runs)
    choices, rows = summarize_groups(groups)
    for row in rows:
        folder = Path(row["folder"])
        row["folder"] = (
            str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)
        )
    written = make_plots(root, groups, rows) if plots else []
    write_csv(root / SUMMARY_CSV, choices, rows)
    text = markdown(root, groups, rows, written)
    (root / SUMMARY_MD).write_text(text)
    return text
