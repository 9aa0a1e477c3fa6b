"""Factor effects of a factorial sweep, from matched pairs (see ``pinn_exp.summary``).

A factor is a choice key with exactly two values in the sweep (``balancer: none, ema``), among
the configurations that set it (a study folder may also hold peers that set none of the
factors). Its effect on an error metric is measured on matched pairs: two completed runs with
the same seed and the same value of every other choice, one at each level. Per pair the ratio
``error(on) / error(off)``; per factor (and per level of a stratifying key, such as the
optimizer) the geometric mean of the ratios, their range, and how many pairs the factor
improved. A ratio of 0.1 means the factor cut the error tenfold; 1, no effect. Pairs make the
comparison within a seed and within every other setting, so the seed-to-seed spread does not
enter the ratio.

The "off" level is the one named none, uniform, adam, null or false when there is one (the
plain PINN's choice), else the first in natural order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pinn_exp.summary_runs import Group, Run, _finite, _natural

OFF_LEVELS = ("none", "uniform", "adam", "null", "false")


@dataclass
class Effect:
    factor: str
    off: str
    on: str
    stratum: str  # "" for all pairs, else "<key>=<value>"
    ratios: list[float]

    @property
    def geometric_mean(self) -> float:
        return math.exp(sum(math.log(r) for r in self.ratios) / len(self.ratios))

    @property
    def improved(self) -> int:
        return sum(r < 1 for r in self.ratios)


def two_level_factors(groups: list[Group]) -> dict[str, tuple[str, str]]:
    """``{key: (off, on)}`` for each choice key with exactly two values over the groups that
    set it."""
    values: dict[str, set[str]] = {}
    for group in groups:
        for key, value in group.choices.items():
            values.setdefault(key, set()).add(value)
    factors = {}
    for key, levels in values.items():
        if len(levels) != 2:
            continue
        ordered = sorted(levels, key=_natural)
        off = next((v for v in ordered if v.lower() in OFF_LEVELS), ordered[0])
        factors[key] = (off, next(v for v in ordered if v != off))
    return factors


def _value(run: Run, metric: str) -> float | None:
    value = run.metrics.get(metric) if run.status == "completed" else None
    return value if _finite(value) and value > 0 else None


def factor_effects(groups: list[Group], metric: str, by: str | None = None) -> list[Effect]:
    """Each two-level factor's effect on ``metric`` over matched pairs; with ``by`` (a factor)
    also one row per level of ``by`` for each other factor. Factors without a matched pair are
    left out."""
    factors = two_level_factors(groups)
    runs = [(g.choices, r) for g in groups for r in g.runs]
    effects = []
    for factor, (off, on) in factors.items():
        index = {}
        for choices, run in runs:
            value = _value(run, metric)
            if value is not None and factor in choices:
                rest = tuple(sorted((k, v) for k, v in choices.items() if k != factor))
                index[(rest, run.seed, choices[factor])] = (value, choices)
        pairs = []  # (ratio, choices of the "off" run)
        for (rest, seed, level), (value, choices) in index.items():
            if level == off and (rest, seed, on) in index:
                pairs.append((index[(rest, seed, on)][0] / value, choices))
        if not pairs:
            continue
        effects.append(Effect(factor, off, on, "", [r for r, _ in pairs]))
        if by in factors and factor != by:
            for level in factors[by]:
                ratios = [r for r, c in pairs if c.get(by) == level]
                if ratios:
                    effects.append(Effect(factor, off, on, f"{by}={level}", ratios))
    return effects


def effects_table(effects: list[Effect], metric: str) -> str:
    header = ["factor (off -> on)", "within", "pairs", f"{metric} ratio on/off (geo. mean)"]
    header += ["range", "improved"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for e in effects:
        cells = [
            f"{e.factor}: {e.off} -> {e.on}",
            e.stratum or "all",
            str(len(e.ratios)),
            f"{e.geometric_mean:.3g}",
            f"{min(e.ratios):.3g} .. {max(e.ratios):.3g}",
            f"{e.improved}/{len(e.ratios)}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def effects_section(groups: list[Group], metrics: list[str], by: str | None) -> list[str]:
    """Markdown lines: one effects table per metric that has matched pairs (none: [])."""
    parts = []
    for metric in metrics:
        effects = factor_effects(groups, metric, by)
        if effects:
            parts += [f"### Factor effects on {metric} (matched pairs)", ""]
            parts += [effects_table(effects, metric), ""]
    if parts:
        parts += [
            "A pair: two completed runs with the same seed and every other choice equal, the "
            "factor off in one and on in the other. Ratio < 1: the factor lowered the error "
            "(0.1: tenfold). Geometric mean over the pairs; improved = pairs with ratio < 1.",
            "",
        ]
    return parts
