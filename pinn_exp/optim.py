"""Adam with exponential learning-rate decay, and an optional L-BFGS phase after it."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class AdamSchedule:
    """Adam (Kingma & Ba 2015) with ``lr * decay_rate ** (step / decay_steps)``, then
    ``lbfgs_steps`` L-BFGS iterations (Liu & Nocedal 1989) with a strong-Wolfe line search.

    Unknown physical parameters get their own parameter group and learning rate ``lr_unknown``,
    so an anchor ablation compares parameterisations, not step sizes. ``unknown_warmup`` holds
    them at their initial guess for that many steps (learning rate 0) while the network fits
    the data and the physics at the guess: an unknown that moves while the network is still
    far from any flow follows the gradient of a meaningless residual (two-stage training, as
    in e.g. Jagtap et al. 2022, J. Comput. Phys. 466:111402, for inverse supersonic flows).
    """

    def __init__(
        self,
        lr: float = 1e-3,
        decay_rate: float = 0.9,
        decay_steps: int = 1000,
        lr_unknown: float = 1e-3,
        lbfgs_steps: int = 0,
        lbfgs_lr: float = 1.0,
        unknown_warmup: int = 0,
        betas: Sequence[float] = (0.9, 0.999),
    ):
        for name, value in [
            ("lr", lr),
            ("lr_unknown", lr_unknown),
            ("lbfgs_lr", lbfgs_lr),
            ("decay_steps", decay_steps),
        ]:
            if not value > 0:
                raise ValueError(f"optim.{name} must be > 0, got {value!r}")
        if not 0 < decay_rate <= 1:
            raise ValueError(f"optim.decay_rate must be in (0, 1], got {decay_rate!r}")
        if lbfgs_steps < 0:
            raise ValueError(f"optim.lbfgs_steps must be >= 0, got {lbfgs_steps!r}")
        is_int = isinstance(unknown_warmup, int) and not isinstance(unknown_warmup, bool)
        if not (is_int and unknown_warmup >= 0):
            raise ValueError(
                f"optim.unknown_warmup must be an integer >= 0, got {unknown_warmup!r}"
            )
        self.unknown_warmup = unknown_warmup
        self.lr, self.decay_rate, self.decay_steps = lr, decay_rate, decay_steps
        self.lr_unknown, self.lbfgs_steps, self.lbfgs_lr = lr_unknown, lbfgs_steps, lbfgs_lr
        self.betas = tuple(betas)

    def adam(self, params: list[nn.Parameter], unknowns: list[nn.Parameter]):
        groups = [{"params": params, "lr": self.lr}]
        if unknowns:
            groups.append({"params": unknowns, "lr": self.lr_unknown})
        optimizer = torch.optim.Adam(groups, betas=self.betas)
        gamma = self.decay_rate ** (1.0 / self.decay_steps)
        if not (unknowns and self.unknown_warmup):
            return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
        warmup = self.unknown_warmup
        factors = [lambda step: gamma**step, lambda step: gamma**step if step >= warmup else 0.0]
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factors)

    def lbfgs(self, params: list[nn.Parameter]) -> torch.optim.LBFGS:
        # One iteration per call keeps the loop's step counter, logging and checkpoints working;
        # the curvature history lives in the optimizer state and survives between calls.
        return torch.optim.LBFGS(
            params, lr=self.lbfgs_lr, max_iter=1, history_size=50, line_search_fn="strong_wolfe"
        )

    def __repr__(self) -> str:
        return (
            f"AdamSchedule(lr={self.lr}, decay_rate={self.decay_rate}, "
            f"decay_steps={self.decay_steps}, lr_unknown={self.lr_unknown}, "
            f"lbfgs_steps={self.lbfgs_steps}, unknown_warmup={self.unknown_warmup})"
        )
