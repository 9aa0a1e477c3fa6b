"""Allen-Cahn step time against DeepXDE 1.15 on a matched problem, measured interleaved in one run.

The matched problem: `u_t - 1e-4 u_xx + 5 (u^3 - u) = 0` on [-1, 1] x [0, 1], a tanh MLP of
3 hidden layers x 30 (Glorot-normal weights, zero biases) on the periodic embedding
`(2t - 1, cos(pi x), sin(pi x))`, 5,000 residual points, 512 initial-condition points, float64,
one Adam step (lr 1e-3) = loss terms + one backward of their sum + the update. DeepXDE runs its
pytorch backend (`DDE_BACKEND=pytorch`, `dde.config.set_default_float("float64")`), the same
network with the embedding as `net.apply_feature_transform`, `TimePDE` with
`num_domain = points - ic` and `num_initial = ic`, so that its PDE loss also averages 5,000 points
(DeepXDE evaluates the PDE at every training point, its 512 initial-condition points too, and
drops those from the loss). Each DeepXDE step is `model.train_step`, what `model.train` calls.

Ours: `AllenCahn.losses` + backward + `torch.optim.Adam` for the derivative paths
(`pde.derivatives`: nested autograd, the previous default; stacked streams, the default) with
and without causal weighting (`pde.causal_eps`, 50 by default) and, with `--compile`, the
compiled stacked path (`pde.compile=true`; its compile time is reported apart). Every
configuration trains its own copy of the same initial network. Rounds run `--steps` steps of
every configuration, in an order rotated every round, so that a load change on this shared
machine hits all of them alike; the table reports the median step and its ratio to DeepXDE's.

A second table (`--evaluations`) times one loss-and-gradient evaluation (`losses` + backward
of their sum, the unit of cost of a quasi-Newton line search) at the same sizes, for the tanh
MLP and a SIREN (omega_0 = 5, as `conf/specialize/allen_cahn_siren.yaml` sets), old path
(nested autograd) against new (stacked streams; with `--compile` also compiled ones).

    pip install -e ".[bench]"     # deepxde==1.15.0, an optional extra
    OMP_WAIT_POLICY=PASSIVE python scripts/bench_deepxde.py --compile --evaluations
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pinn_exp.models import MLP, SIREN
from pinn_exp.problems.allen_cahn import AllenCahn

ROOT = Path(__file__).resolve().parents[1]
D, K = 1e-4, 5.0


def import_deepxde():
    """DeepXDE on its pytorch backend in float64, or a clear exit if it is not installed."""
    os.environ["DDE_BACKEND"] = "pytorch"  # read when deepxde is first imported
    try:
        import deepxde as dde
    except ImportError:
        sys.exit(
            "deepxde is not installed; this benchmark needs it: "
            'pip install -e ".[bench]" (or pip install deepxde==1.15.0)'
        )
    if dde.__version__ != "1.15.0":
        print(f"warning: deepxde {dde.__version__}, the matched set-up is for 1.15.0")
    dde.config.set_default_float("float64")
    return dde


def deepxde_step(dde, args) -> Callable[[], None]:
    """One DeepXDE training step on the matched problem."""
    dde.config.set_random_seed(args.seed)
    space_time = dde.geometry.GeometryXTime(
        dde.geometry.Interval(-1, 1), dde.geometry.TimeDomain(0, 1)
    )

    def pde(x, y):  # DeepXDE's inputs are (x, t)
        y_t = dde.grad.jacobian(y, x, i=0, j=1)
        y_xx = dde.grad.hessian(y, x, i=0, j=0)
        return y_t - D * y_xx + K * (y**3 - y)

    ic = dde.icbc.IC(
        space_time,
        lambda x: x[:, 0:1] ** 2 * np.cos(np.pi * x[:, 0:1]),
        lambda _, on_initial: on_initial,
    )
    data = dde.data.TimePDE(
        space_time,
        pde,
        [ic],
        num_domain=args.points - args.ic,
        num_initial=args.ic,
        train_distribution="pseudo",
    )
    net = dde.nn.FNN([3] + [args.width] * args.depth + [1], "tanh", "Glorot normal")

    def embed(x):
        s, t = x[:, 0:1], x[:, 1:2]
        return torch.cat([2 * t - 1, torch.cos(math.pi * s), torch.sin(math.pi * s)], 1)

    net.apply_feature_transform(embed)
    model = dde.Model(data, net)
    model.compile("adam", lr=args.lr)
    model.train(iterations=1, display_every=10**9, verbose=0)  # builds the training set
    state = model.train_state

    def step() -> None:
        model.train_step(state.X_train, state.y_train, state.train_aux_vars)

    return step


def our_step(problem: AllenCahn, model: torch.nn.Module, x: torch.Tensor, lr: float):
    """One Adam step as `run.train`'s fast path takes it: loss terms, one backward, update."""
    model = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        sum(problem.losses(model, x).values()).backward()
        opt.step()

    return step


def evaluation(problem: AllenCahn, model: torch.nn.Module, x: torch.Tensor):
    """One loss-and-gradient evaluation, as a quasi-Newton line search calls it."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        sum(problem.losses(model, x).values()).backward()

    return step


def measure(steps: dict[str, Callable[[], None]], rounds: int, per_round: int, warmup: int):
    """Median step time (s) of each callable, interleaved; first-call times (compilation)."""
    first = {}
    for name, step in steps.items():
        t0 = time.perf_counter()
        step()
        first[name] = time.perf_counter() - t0
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            for _ in range(per_round):
                t0 = time.perf_counter()
                steps[name]()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}, first


def problem(args, **kwargs) -> AllenCahn:
    return AllenCahn(
        torch.Generator().manual_seed(args.seed), args.data_dir, d=D, k=K, n_ic=args.ic, **kwargs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=5000, help="residual points")
    parser.add_argument("--ic", type=int, default=512, help="initial-condition points")
    parser.add_argument("--width", type=int, default=30)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--causal-eps", type=float, default=50.0, help="pde.causal_eps on")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=3, help="steps per configuration a round")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true", help="also pde.compile=true")
    parser.add_argument("--evaluations", action="store_true", help="also the second table")
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    args = parser.parse_args()
    if args.ic >= args.points:
        parser.error("--ic must be smaller than --points")
    dde = import_deepxde()

    gen = torch.Generator().manual_seed(args.seed)
    mlp = MLP(3, 1, gen, width=args.width, depth=args.depth)
    x = problem(args).sample_domain(args.points, gen)
    eps = args.causal_eps
    variants = {  # name: AllenCahn keyword arguments
        "ours: nested autograd (before), causal off": dict(derivatives="autograd"),
        f"ours: nested autograd (before), causal eps={eps:g}": dict(
            derivatives="autograd", causal_eps=eps
        ),
        "ours: stacked, causal off": dict(derivatives="stacked"),
        f"ours: stacked, causal eps={eps:g} (default)": dict(causal_eps=eps),
    }
    if args.compile:
        variants["ours: stacked + compile, causal off"] = dict(compile=True)
        variants[f"ours: stacked + compile, causal eps={eps:g}"] = dict(
            compile=True, causal_eps=eps
        )
    steps = {"DeepXDE 1.15 (pytorch)": deepxde_step(dde, args)}
    steps |= {name: our_step(problem(args, **kw), mlp, x, args.lr) for name, kw in variants.items()}
    medians, first = measure(steps, args.rounds, args.steps, args.warmup)

    base = medians["DeepXDE 1.15 (pytorch)"]
    print(f"`OMP_WAIT_POLICY=PASSIVE python {' '.join(sys.argv)}`\n")
    print(
        f"torch {torch.__version__}, deepxde {dde.__version__}, {torch.get_num_threads()} "
        f"threads, float64, tanh MLP {args.depth} x {args.width}, {args.points} residual + "
        f"{args.ic} IC points, Adam; median of {args.rounds} rounds x {args.steps} steps\n"
    )
    print("| configuration | step (ms) | ratio to DeepXDE | first step (s) |")
    print("|---|---:|---:|---:|")
    for name, med in medians.items():
        print(f"| {name} | {1e3 * med:.1f} | {med / base:.2f} | {first[name]:.2f} |")

    if not args.evaluations:
        return
    models = {
        f"tanh MLP {args.depth} x {args.width}": mlp,
        f"SIREN {args.depth} x {args.width}": SIREN(
            3, 1, gen, width=args.width, depth=args.depth, omega_0=5.0, hidden_omega_0=5.0
        ),
    }
    paths = {"autograd": {"derivatives": "autograd"}, "stacked": {}}
    if args.compile:
        paths["compile"] = {"compile": True}
    evals = {}
    for label, model in models.items():
        for causal in (0.0, eps):
            for path, kw in paths.items():
                p = problem(args, causal_eps=causal, **kw)
                evals[(label, causal, path)] = evaluation(p, model, x)
    medians, _ = measure(evals, args.rounds, args.steps, args.warmup)
    print(f"\nloss-and-gradient evaluation (losses + backward), {args.points} points\n")
    compiled = " stacked + compile (ms) | speed-up |" if args.compile else ""
    print(f"| model | causal eps | nested autograd (ms) | stacked (ms) | speed-up |{compiled}")
    print("|---|---:|---:|---:|---:|" + ("---:|---:|" if args.compile else ""))
    for label in models:
        for causal in (0.0, eps):
            old, *new = (1e3 * medians[(label, causal, p)] for p in paths)
            row = "".join(f" {t:.1f} | {old / t:.2f}x |" for t in new)
            print(f"| {label} | {causal:g} | {old:.1f} |{row}")


if __name__ == "__main__":
    main()
