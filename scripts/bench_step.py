"""Step-time benchmark: each configuration's mean step time (sampler updates amortised, evaluation
and logging excluded) and its ratio to the plain step, measured in one run.

Rounds interleave the configurations, in an order rotated every round, so that a load change on
this shared machine hits all of them alike; the table reports the median over rounds.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_step.py --pde allen_cahn --steps 500 --rounds 3

Sampler updates happen at the config's interval (250 by default); pass e.g. `sampler.interval=100`
as an extra override to change it.

With `--quasi-newton OPTION` (e.g. ssbroyden) it compares instead an Adam step with one iteration
of that quasi-Newton phase (line search included) at the same network and points, after
`--warmup` Adam steps, and reports the objective evaluations per iteration:

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_step.py --quasi-newton ssbroyden --steps 300 \
        model=mlp model.width=30 model.depth=3 sampler.n_points=5000 pde.causal_eps=0
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from pinn_exp.run import train

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ["balancer=none", "surgery=none", "sampler=uniform"]
# Each configuration changes one module of the plain PINN (later overrides win).
CONFIGS = {
    "plain": PLAIN,
    "ema": [*PLAIN, "balancer=ema"],
    "pcgrad+gtn": [*PLAIN, "surgery=pcgrad"],
    "rar": [*PLAIN, "sampler=rar"],
    "ema+pcgrad+gtn+rar (full)": ["balancer=ema", "surgery=pcgrad", "sampler=rar"],
    "upgrad": [*PLAIN, "surgery=upgrad"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pde", default="allen_cahn")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument("--quasi-newton", default=None, help="an optim option, e.g. ssbroyden")
    parser.add_argument("--warmup", type=int, default=100, help="Adam steps before it")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every config")
    args = parser.parse_args()
    if args.quasi_newton:
        return quasi_newton_ratio(args)

    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        names = list(CONFIGS)
        for r in range(args.rounds):
            # Rotate the order every round, so that no configuration always runs first or last.
            for name in names[r % len(names) :] + names[: r % len(names)]:
                out = f"{tmp}/{r}_{len(times[name])}_{abs(hash(name))}"
                m = train(_config(args, args.steps, out, [*CONFIGS[name], *args.overrides]))
                times[name].append(1e3 * m["wall_time_s"] / m["steps"])
    base = statistics.median(times["plain"])
    print(
        f"pde={args.pde}, {args.steps} steps x {args.rounds} rounds, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"overrides: {' '.join(args.overrides) or '(defaults)'}")
    print("| configuration | step time (ms, median of rounds) | ratio to plain |")
    print("|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med:.1f} | {med / base:.2f} |")


def _config(args, steps: int, output_dir: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"pde={args.pde}",
                f"steps={steps}",
                f"eval_every={steps}",
                f"checkpoint_every={steps}",
                f"log_every={steps}",
                "diagnostics=false",
                "progress=false",
                f"data_dir={args.data_dir}",
                f"output_dir={output_dir}",
                *overrides,
            ],
        )


def quasi_newton_ratio(args) -> None:
    """Median Adam step against median quasi-Newton iteration, interleaved over rounds."""
    adam, qn, evals = [], [], []
    total = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            runs = [("adam", ["optim=adam"]), ("qn", [f"optim={args.quasi_newton}"])]
            for name, extra in runs[r % 2 :] + runs[: r % 2]:
                extra = [*extra, f"optim.adam_steps={args.warmup}"] if name == "qn" else extra
                m = train(_config(args, total, f"{tmp}/{name}{r}", [*extra, *args.overrides]))
                if name == "adam":
                    adam.append(m["step_time_ms_adam"])
                else:
                    qn.append(m["step_time_ms_quasi_newton"])
                    evals.append(m["qn_evals_per_iteration"])
    a, q = statistics.median(adam), statistics.median(qn)
    print(
        f"pde={args.pde}, {args.steps} steps x {args.rounds} rounds, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"overrides: {' '.join(args.overrides) or '(defaults)'}")
    print("| Adam step (ms) | quasi-Newton iteration (ms) | ratio | evaluations / iteration |")
    print("|---|---|---|---|")
    print(f"| {a:.1f} | {q:.1f} | {q / a:.2f} | {statistics.median(evals):.2f} |")


if __name__ == "__main__":
    main()
