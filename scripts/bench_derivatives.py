"""Derivative benchmark: median time of one training step (Navier-Stokes residual loss + backward)
with stacked forward-mode derivatives, nested autograd and, optionally, compiled stacked ones.

Same model, same points, same loss; repetitions interleave the methods, so that a load change on
this shared machine hits all of them alike. Prints a markdown table with the ratios.

    OMP_WAIT_POLICY=PASSIVE python scripts/bench_derivatives.py --compile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import torch

from pinn_exp.models import MLP, SIREN
from pinn_exp.problems.navier_stokes import NavierStokes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["siren", "mlp"], default="siren")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--all-terms", action="store_true", help="boundary terms too")
    parser.add_argument("--compile", action="store_true", help="also torch.compile (slow start)")
    args = parser.parse_args()

    gen = torch.Generator().manual_seed(0)
    model_cls = {"siren": SIREN, "mlp": MLP}[args.model]
    model = model_cls(2, 3, gen, width=args.width, depth=args.depth)
    methods = {"nested autograd": ("autograd", False), "stacked": ("stacked", False)}
    if args.compile:
        methods["stacked + torch.compile"] = ("stacked", True)
    with tempfile.TemporaryDirectory() as tmp:  # the reference is never needed here
        problems = {
            name: NavierStokes(torch.Generator().manual_seed(0), tmp, derivatives=d, compile=c)
            for name, (d, c) in methods.items()
        }
    x = problems["stacked"].sample_domain(args.points, gen)

    def step(problem: NavierStokes) -> float:
        t0 = time.perf_counter()
        model.zero_grad(set_to_none=True)
        if args.all_terms:
            loss = sum(problem.losses(model, x).values())
        else:
            loss = problem.residual_components(model, x).pow(2).mean(0).sum()
        loss.backward()
        return time.perf_counter() - t0

    first = {}
    for name, problem in problems.items():
        first[name] = step(problem)  # includes compilation for the compiled variant
        for _ in range(args.warmup - 1):
            step(problem)
    times = {name: [] for name in problems}
    for _ in range(args.repeats):
        for name, problem in problems.items():
            times[name].append(step(problem))

    base = statistics.median(times["nested autograd"])
    print(f"`OMP_WAIT_POLICY=PASSIVE python {' '.join(sys.argv)}`\n")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float64, "
        f"{args.model} {args.width}x{args.depth}, {args.points} points, "
        f"{'all terms' if args.all_terms else 'residual terms'}, median of {args.repeats}\n"
    )
    print("| derivatives | step (ms) | speed-up vs nested autograd | first step (s) |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {1e3 * med:.1f} | {base / med:.2f}x | {first[name]:.2f} |")


if __name__ == "__main__":
    main()
