"""Run one study of the quasi-Newton ablation (issue #11) with one command:
``python scripts/study.py STUDY OUT_DIR [override ...]``.

A study is one or more Hydra multiruns of ``train.py`` written into one folder, so that
``python scripts/summarize.py OUT_DIR`` tables and plots it in one go. A Hydra sweep is a
Cartesian product: the Navier-Stokes study's two Adam rows (every module off, every module on)
are not a sub-grid of the module grid, so they are multiruns of their own. Each part is a sweep
folder ``OUT_DIR/<part>`` (runs in ``cfg_<overrides>/seed=<seed>`` as usual); extra overrides (e.g.
``hydra/launcher=local_parallel``, ``data_dir=...``) are passed to every part. Run it with one
thread per run, e.g.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python scripts/study.py ns_inverse_qn_cpu \\
        outputs/studies/ns_inverse_qn_cpu hydra/launcher=local_parallel

``--dry-run`` prints the commands instead of running them.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_PLAIN = ["balancer=none", "surgery=none", "sampler=uniform", "anchor=none"]
_FULL = ["balancer=ema", "surgery=pcgrad", "sampler=rar", "anchor=softplus"]


def _allen_cahn(size: str) -> list[tuple[str, list[str]]]:
    return [
        ("ablation", [f"experiment=ablation_allen_cahn_qn_{size}"]),
        ("peers", [f"experiment=peers_allen_cahn_qn_{size}"]),
    ]


def _ns_inverse(size: str) -> list[tuple[str, list[str]]]:
    grid = f"experiment=ablation_ns_inverse_qn_{size}"
    return [
        ("ablation", [grid, "optim=ssbroyden"]),
        ("adam_plain", [grid, "optim=adam", *_PLAIN]),
        ("adam_full", [grid, "optim=adam", *_FULL]),
        ("peers", [f"experiment=peers_ns_inverse_qn_{size}"]),
    ]


# study -> [(part, overrides of one multirun)], at this machine's size and a GPU size
STUDIES: dict[str, list[tuple[str, list[str]]]] = {
    f"{name}_qn_{size}": parts(size)
    for name, parts in [("allen_cahn", _allen_cahn), ("ns_inverse", _ns_inverse)]
    for size in ("cpu", "gpu")
}


def commands(study: str, out: Path, extra: list[str] = ()) -> list[list[str]]:
    """The ``train.py -m`` command lines of ``study``, run from the repository root."""
    if study not in STUDIES:
        raise KeyError(f"study={study!r} is not allowed: one of {', '.join(STUDIES)}")
    return [
        [
            sys.executable,
            "train.py",
            "-m",
            *overrides,
            # each part its own sweep folder; the config's subdir (cfg_<overrides>/seed=<n>) within
            f"hydra.sweep.dir={Path(out).resolve() / part}",
            *extra,
        ]
        for part, overrides in STUDIES[study]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help=f"one of: {', '.join(STUDIES)}")
    parser.add_argument("out", type=Path, help="the folder every run of the study goes to")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to every part")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = parser.parse_intermixed_args(argv)
    try:
        cmds = commands(args.study, args.out, args.overrides)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    for cmd in cmds:
        print(shlex.join(cmd), flush=True)
        if not args.dry_run and subprocess.run(cmd, cwd=ROOT).returncode != 0:
            print(f"error: this part of study {args.study} failed; stopping", file=sys.stderr)
            return 1
    if not args.dry_run:
        print(f"summarise with: python scripts/summarize.py {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
