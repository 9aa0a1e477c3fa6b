"""Step-time benchmark: each configuration's mean step time (sampler updates amortised, evaluation
and logging excluded) and its ratio to the plain step, measured in one run.

Rounds interleave the configurations, in an order rotated every round, so that a load change on
this shared machine hits all of them alike; the table reports the median over rounds.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_step.py --pde allen_cahn --steps 500 --rounds 3

Sampler updates happen at the config's interval (250 by default); pass e.g. `sampler.interval=100`
as an extra override to change it.
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
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every config")
    args = parser.parse_args()

    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        names = list(CONFIGS)
        for r in range(args.rounds):
            # Rotate the order every round, so that no configuration always runs first or last.
            for name in names[r % len(names) :] + names[: r % len(names)]:
                extra = CONFIGS[name]
                with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
                    cfg = compose(
                        "config",
                        overrides=[
                            f"pde={args.pde}",
                            f"steps={args.steps}",
                            f"eval_every={args.steps}",
                            f"checkpoint_every={args.steps}",
                            f"log_every={args.steps}",
                            "diagnostics=false",
                            "progress=false",
                            f"data_dir={args.data_dir}",
                            f"output_dir={tmp}/{r}_{len(times[name])}_{abs(hash(name))}",
                            *extra,
                            *args.overrides,
                        ],
                    )
                m = train(cfg)
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


if __name__ == "__main__":
    main()
