"""Reading the runs of a sweep folder and grouping them into configurations (see
``pinn_exp.summary``, which re-exports this module's names)."""

from __future__ import annotations

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
    """Runs that differ only in the excluded keys (seed, ...) form one group, sorted by choice;
    the order of the overrides does not matter (two command lines may give them differently)."""
    groups: dict[tuple, Group] = {}
    for run in runs:
        key = tuple(sorted(run.config_key))
        groups.setdefault(key, Group(run.config_key)).runs.append(run)
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


def group_label(group: Group, columns: list[str]) -> str:
    return ", ".join(f"{c}={group.choices.get(c, '')}" for c in columns) or "runs"
