"""Summarize a sweep: ``python scripts/summarize.py <sweep folder> [--no-plots]``.

Writes ``summary.md``, ``summary.csv`` and PNG plots into the sweep folder (one row per
configuration, seeds grouped; see ``pinn_exp.summary``) and prints the markdown. Plots (mean
over seeds, min..max band): error_vs_step, error_vs_time, final_error, alignment_vs_step and
conflict_vs_step (where the runs logged ``align/score`` / ``grad/conflict_fraction``), and
unknown_<name> for inverse problems. ``--no-plots`` keeps every table column. For every
choice with two values in the sweep, the factor effects from matched pairs (same seed, every
other choice equal; ``pinn_exp.summary_effects``), also per level of ``--by`` (default optim).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pinn_exp.summary import summarize


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a Hydra sweep folder (or a single run folder)")
    parser.add_argument("--no-plots", action="store_true", help="tables only, no PNG plots")
    parser.add_argument(
        "--by",
        default="optim",
        help="factor effects also per level of this two-level factor (default: optim, if varied)",
    )
    args = parser.parse_args(argv)
    if not args.sweep.is_dir():
        print(f"error: {args.sweep} is not a folder", file=sys.stderr)
        return 2
    try:
        text = summarize(args.sweep, plots=not args.no_plots, by=args.by)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
