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

Gradient diagnostics (``DIAGNOSTICS``, from the TensorBoard events, logged by ``run.train``
only where a balancer or surgery computes the per-term gradients): ``align/score`` (the
gradient-alignment score of Wang et al. 2025 over the preconditioned per-term directions: 1 when
they agree, -1 for two opposite terms) and ``grad/conflict_fraction`` (the fraction of term pairs
whose gradients have a negative cosine). Their last logged value per seed gives the columns
``final_align_score`` and ``final_conflict_fraction`` (mean, std over the completed seeds that
logged them), present when any configuration logged the tag; the configurations that did not are
named in a note (``diagnostic_notes``).

Plots (PNG, ``pinn_exp.summary_plots``): error against step and against wall time, the final
errors, the alignment score and conflict fraction against step, the unknowns of inverse problems.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from pinn_exp.summary_effects import effects_section
from pinn_exp.summary_runs import (
    DEFAULT_EXCLUDE,
    HEADLINE,
    Group,
    Run,
    _finite,
    choice_columns,
    find_runs,
    fixed_choices,
    group_label,
    group_runs,
    load_run,
    mean_std,
    parse_overrides,
    varying_columns,
)

__all__ = [  # this module's API, with the reading and grouping of summary_runs
    "DEFAULT_EXCLUDE", "DIAGNOSTICS", "HEADLINE", "SCALAR_PREFIXES", "SUMMARY_CSV", "SUMMARY_MD",
    "Diagnostic", "Group", "Run", "choice_columns", "diagnostic_notes", "error_metrics",
    "extra_metrics", "final_values", "find_runs", "fixed_choices", "group_label", "group_runs",
    "load_run", "load_scalars", "logged_diagnostics", "markdown", "markdown_table", "mean_std",
    "parse_overrides", "summarize", "summarize_groups", "varying_columns", "write_csv",
]  # fmt: skip

SUMMARY_MD, SUMMARY_CSV = "summary.md", "summary.csv"


class Diagnostic(NamedTuple):
    """A per-step TensorBoard scalar summarized per configuration: its final value, its plot."""

    tag: str
    column: str  # CSV columns <column>_mean, <column>_std
    header: str  # markdown column
    plot: str
    label: str  # the plot's y label
    bounds: tuple[float, float]  # the values it can take


DIAGNOSTICS = (
    Diagnostic(
        tag="align/score",
        column="final_align_score",
        header="align score (final)",
        plot="alignment_vs_step.png",
        label="alignment score",
        bounds=(-1.0, 1.0),
    ),
    Diagnostic(
        tag="grad/conflict_fraction",
        column="final_conflict_fraction",
        header="conflict fraction (final)",
        plot="conflict_vs_step.png",
        label="conflict fraction",
        bounds=(0.0, 1.0),
    ),
)
# the scalar tags summarize() reads from the event files
SCALAR_PREFIXES = ("eval/", "unknown/", *(d.tag for d in DIAGNOSTICS))


# --- statistics --------------------------------------------------------------------------------
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


def summarize_groups(
    groups: list[Group], scalars: dict[Path, dict] | None = None
) -> tuple[list[str], list[dict]]:
    """One row per group: choices, n/diverged/failed, mean/std of each metric, timing, and the
    final values of the ``DIAGNOSTICS`` that any run logged (``scalars``: ``{run path: {tag:
    (steps, values)}}``, see ``load_scalars``; no such columns when None)."""
    runs = [r for g in groups for r in g.runs]
    choices = choice_columns(groups)
    errors, extras = error_metrics(runs), extra_metrics(runs)
    logged = logged_diagnostics(scalars or {})
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
        # Under a wall-time budget the steps reached differ per configuration and per seed.
        row["steps_mean"] = mean_std([r.metrics.get("steps") for r in good])[0]
        for d in logged:
            finals = final_values(group, scalars, d.tag)
            row[f"{d.column}_mean"], row[f"{d.column}_std"] = mean_std(finals)
        row["folder"] = _common_folder([r.path for r in group.runs])
        rows.append(row)
    return choices, rows


def _common_folder(paths: list[Path]) -> str:
    parents = {p.parent for p in paths}
    return str(parents.pop()) if len(parents) == 1 else str(paths[0])


# --- TensorBoard scalars -----------------------------------------------------------------------
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


def logged_diagnostics(scalars: dict[Path, dict]) -> list[Diagnostic]:
    """The ``DIAGNOSTICS`` that at least one run in ``scalars`` logged."""
    return [d for d in DIAGNOSTICS if any(d.tag in tags for tags in scalars.values())]


def final_values(group: Group, scalars: dict[Path, dict], tag: str) -> list[float]:
    """The last finite value of ``tag`` of each completed run of ``group`` that logged one."""
    out = []
    for run in group.by_status("completed"):
        values = [v for v in scalars.get(run.path, {}).get(tag, ((), ()))[1] if math.isfinite(v)]
        if values:
            out.append(values[-1])
    return out


def diagnostic_notes(groups: list[Group], scalars: dict[Path, dict]) -> list[str]:
    """Which configurations (with completed runs) never logged each of the ``DIAGNOSTICS``."""
    columns = varying_columns(groups)
    ran = [g for g in groups if g.by_status("completed")]
    notes = []
    for d in DIAGNOSTICS:
        missing = [g for g in ran if not any(d.tag in scalars.get(r.path, {}) for r in g.runs)]
        if ran and len(missing) == len(ran):
            notes.append(f"`{d.tag}`: logged by no configuration; no {d.plot}, no column.")
        elif missing:
            names = "; ".join(f"`{group_label(g, columns)}`" for g in missing)
            notes.append(f"`{d.tag}`: not logged by {names}; left out of {d.plot}.")
    if notes:
        notes.append(
            "(The training loop logs them only where a balancer or surgery computes the "
            "per-term gradients.)"
        )
    return notes


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


def _pm_unit(mean: float, std: float) -> str:
    """A value of order one (a score, a fraction): 0.412 ± 0.031."""
    if not _finite(mean):
        return "–"
    return f"{mean:.3f} ± {std:.3f}" if _finite(std) else f"{mean:.3f}"


def _table_diagnostics(rows: list[dict]) -> list[Diagnostic]:
    return [d for d in DIAGNOSTICS if any(_finite(row.get(f"{d.column}_mean")) for row in rows)]


def markdown_table(groups: list[Group], rows: list[dict]) -> str:
    runs = [r for g in groups for r in g.runs]
    columns, errors = varying_columns(groups), error_metrics(runs)
    errors = [m for m in errors if any(_finite(row[f"{m}_mean"]) for row in rows) or m == HEADLINE]
    diagnostics = _table_diagnostics(rows)
    means = [row[f"{HEADLINE}_mean"] for row in rows]
    best = min((m for m in means if _finite(m)), default=None) if len(rows) > 1 else None
    header = [*columns, *errors, "n", "diverged", "failed", "step ms (median)", "wall s (mean)"]
    header += ["steps (mean)"]
    header += [d.header for d in diagnostics]
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
        cells += [_num(row["steps_mean"])]
        cells += [_pm_unit(row[f"{d.column}_mean"], row[f"{d.column}_std"]) for d in diagnostics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(
    root: Path,
    groups: list[Group],
    rows: list[dict],
    plots: list[Path],
    notes: Sequence[str] = (),
    by: str | None = "optim",
) -> str:
    """The page: counts, common choices, true values, the table, ``notes``, the factor effects
    (per level of ``by`` too, when ``by`` is a two-level factor), the ``plots``."""
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
    if _table_diagnostics(rows):
        parts += [
            "Gradient diagnostics, last logged value per seed, mean ± std over the seeds that "
            "logged it: align score = `align/score`, the gradient-alignment score (Wang et al. "
            "2025) of the preconditioned per-term directions (1: they agree, -1: two opposite "
            "terms); conflict fraction = `grad/conflict_fraction`, the fraction of term pairs "
            "whose gradients have a negative cosine.",
            "",
        ]
    parts += [*(f"- {note}" for note in notes), ""] if notes else []
    metrics = [m for m in error_metrics(runs) if not m.endswith("_pred")]
    parts += effects_section(groups, metrics, by)
    parts += [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(parts).rstrip() + "\n"


# --- the whole thing ---------------------------------------------------------------------------
def summarize(root: Path, plots: bool = True, by: str | None = "optim") -> str:
    """Write ``summary.md``, ``summary.csv`` (and plots) into ``root``; return the markdown.
    ``by``: the factor whose levels the factor effects are also given per level of."""
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run folders (.hydra/overrides.yaml or metrics.json) in {root}")
    groups = group_runs(runs)
    scalars = {
        r.path: load_scalars(r.path, SCALAR_PREFIXES) if r.status == "completed" else {}
        for r in runs
    }
    choices, rows = summarize_groups(groups, scalars)
    for row in rows:
        folder = Path(row["folder"])
        row["folder"] = (
            str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)
        )
    written = []
    if plots:
        from pinn_exp.summary_plots import make_plots  # imports this module: matplotlib on demand

        written = make_plots(root, groups, rows, scalars)
    write_csv(root / SUMMARY_CSV, choices, rows)
    text = markdown(root, groups, rows, written, diagnostic_notes(groups, scalars), by)
    (root / SUMMARY_MD).write_text(text)
    return text
