"""Which Reynolds number does a trained Navier-Stokes PINN's field prefer?

``python scripts/re_consistency.py <run folder> [--points 20000] [--seed 5]``

Loads the run's config and checkpoint, evaluates the momentum residual's two parts at uniform
fluid points, ``A = (u.grad)u + grad p`` and ``B = lap u``, and prints the least-squares
``Re* = <B, B> / <A, B>`` that minimises ``|A - B / Re|^2`` for this fixed field, overall and
near the cylinder (within one diameter of its centre) and away from it. An inverse PINN can only
recover Re as well as its field's viscous term allows: if a field trained *at* the true Re
prefers another Re*, the residual pulls the unknown toward Re*, whatever the data and noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from pinn_exp.checkpoint import load
from pinn_exp.run import build


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run", type=Path, help="a Navier-Stokes run folder (config.yaml, checkpoint.pt)"
    )
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    config, checkpoint = args.run / "config.yaml", args.run / "checkpoint.pt"
    for path in (config, checkpoint):
        if not path.is_file():
            print(f"error: {path} does not exist", file=sys.stderr)
            return 2
    cfg = OmegaConf.load(config)
    if "navier_stokes" not in cfg.pde._target_:
        print(f"error: {args.run} is a {cfg.pde._target_} run, not Navier-Stokes", file=sys.stderr)
        return 2
    parts = build(cfg)
    parts.model.load_state_dict(load(checkpoint)["model"])
    x = parts.problem.sample_domain(args.points, torch.Generator().manual_seed(args.seed))
    re = parts.problem.preferred_re(parts.model, x)
    print(
        f"{args.run}: preferred Re* = {re['all']:.1f} (near the cylinder {re['near']:.1f}, "
        f"away from it {re['away']:.1f}); the run's Re: {cfg.pde.re:g}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
