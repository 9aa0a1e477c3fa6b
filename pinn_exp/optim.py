"""The run's optimizer schedule: a first-order method (Adam or SOAP) with exponential decay, then
optionally a quasi-Newton phase (:mod:`pinn_exp.phases`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from pinn_exp.phases import AdamPhase, QuasiNewtonPhase, QuasiNewtonSpec, SOAPPhase


def _adam(schedule: Schedule, groups: list[dict]) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, betas=schedule.betas)


def _soap(schedule: Schedule, groups: list[dict]) -> torch.optim.Optimizer:
    # Imported here: the library adds about 0.5 s to start-up, which Adam runs need not pay.
    from pytorch_optimizer.optimizer.soap import SOAP

    return SOAP(
        groups,
        betas=schedule.betas,
        shampoo_beta=schedule.soap_shampoo_beta,
        precondition_frequency=schedule.soap_precondition_frequency,
        weight_decay=0.0,  # the library's 0.01 is a language-model setting; a PINN fits exactly
    )


METHODS: dict[str, tuple[Callable[[Schedule, list[dict]], torch.optim.Optimizer], type]] = {
    "adam": (_adam, AdamPhase),
    "soap": (_soap, SOAPPhase),
}
"""The first-order methods: ``optim.method`` -> (optimizer builder, phase class)."""


class Schedule:
    """A first-order method with ``lr * decay_rate ** (step / decay_steps)`` for ``adam_steps``
    steps (``None``: the whole run), then, when ``quasi_newton`` is given, a quasi-Newton phase
    for the rest of the run's ``steps``. ``adam_steps`` keeps its name for compatibility: it
    counts steps of whichever first-order ``method`` is chosen.

    ``method``: ``"adam"`` (Kingma & Ba 2015) or ``"soap"`` (Vyas et al. 2024, SOAP: Adam in the
    eigenbasis of Shampoo's preconditioner, as used for PINNs by Wang et al. 2025; from
    ``pytorch-optimizer``, see :class:`~pinn_exp.phases.SOAPPhase`). Both use ``betas``.
    ``soap_precondition_frequency``: steps between refreshes of SOAP's eigenbasis;
    ``soap_shampoo_beta``: decay of its Kronecker factors (``None``: ``betas[1]``).

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
        unknown_warmup: int = 0,
        betas: Sequence[float] = (0.9, 0.999),
        adam_steps: int | None = None,
        quasi_newton: QuasiNewtonSpec | None = None,
        method: str = "adam",
        soap_precondition_frequency: int = 10,
        soap_shampoo_beta: float | None = None,
    ):
        if method not in METHODS:
            raise ValueError(f"optim.method={method!r} is not allowed: one of {', '.join(METHODS)}")
        freq = soap_precondition_frequency
        if not (isinstance(freq, int) and not isinstance(freq, bool) and freq >= 1):
            raise ValueError(
                f"optim.soap_precondition_frequency must be an integer >= 1, got {freq!r}"
            )
        if soap_shampoo_beta is not None and not 0 <= soap_shampoo_beta < 1:
            raise ValueError(
                f"optim.soap_shampoo_beta must be null or in [0, 1), got {soap_shampoo_beta!r}"
            )
        for name, value in [
            ("lr", lr),
            ("lr_unknown", lr_unknown),
            ("decay_steps", decay_steps),
        ]:
            if not value > 0:
                raise ValueError(f"optim.{name} must be > 0, got {value!r}")
        if not 0 < decay_rate <= 1:
            raise ValueError(f"optim.decay_rate must be in (0, 1], got {decay_rate!r}")
        if adam_steps is not None and not (isinstance(adam_steps, int) and adam_steps >= 0):
            raise ValueError(f"optim.adam_steps must be an integer >= 0, got {adam_steps!r}")
        if adam_steps is None and quasi_newton is not None:
            raise ValueError("optim.adam_steps must be set when optim.quasi_newton is")
        is_int = isinstance(unknown_warmup, int) and not isinstance(unknown_warmup, bool)
        if not (is_int and unknown_warmup >= 0):
            raise ValueError(
                f"optim.unknown_warmup must be an integer >= 0, got {unknown_warmup!r}"
            )
        self.unknown_warmup = unknown_warmup
        self.lr, self.decay_rate, self.decay_steps = lr, decay_rate, decay_steps
        self.lr_unknown, self.betas = lr_unknown, tuple(betas)
        self.adam_steps, self.quasi_newton = adam_steps, quasi_newton
        self.method = method
        self.soap_precondition_frequency, self.soap_shampoo_beta = freq, soap_shampoo_beta

    def phases(
        self, params: list[nn.Parameter], unknowns: list[nn.Parameter], steps: int
    ) -> list[tuple[int, AdamPhase | QuasiNewtonPhase]]:
        """The run's phases as ``(first step, phase)``, in order, for a run of ``steps``."""
        adam_steps = steps if self.adam_steps is None else min(self.adam_steps, steps)
        out: list[tuple[int, AdamPhase | QuasiNewtonPhase]] = []
        if adam_steps > 0 or self.quasi_newton is None:
            out.append((0, self.first_order_phase(params, unknowns)))
        if self.quasi_newton is not None and adam_steps < steps:
            out.append((adam_steps, self.quasi_newton.build([*params, *unknowns])))
        return out

    def first_order_phase(
        self, params: list[nn.Parameter], unknowns: list[nn.Parameter]
    ) -> AdamPhase:
        """The phase of ``method`` (:class:`AdamPhase` or :class:`SOAPPhase`)."""
        return METHODS[self.method][1](*self.first_order(params, unknowns))

    def first_order(self, params: list[nn.Parameter], unknowns: list[nn.Parameter]):
        """``method``'s optimizer (the unknowns in a second parameter group at ``lr_unknown``)
        and its learning-rate scheduler (decay, and the unknowns' warm-up)."""
        groups = [{"params": params, "lr": self.lr}]
        if unknowns:
            groups.append({"params": unknowns, "lr": self.lr_unknown})
        optimizer = METHODS[self.method][0](self, groups)
        gamma = self.decay_rate ** (1.0 / self.decay_steps)
        if not (unknowns and self.unknown_warmup):
            return optimizer, torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma)
        warmup = self.unknown_warmup
        factors = [lambda step: gamma**step, lambda step: gamma**step if step >= warmup else 0.0]
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factors)

    def __repr__(self) -> str:
        return (
            f"Schedule(method={self.method!r}, lr={self.lr}, decay_rate={self.decay_rate}, "
            f"decay_steps={self.decay_steps}, lr_unknown={self.lr_unknown}, "
            f"unknown_warmup={self.unknown_warmup}, adam_steps={self.adam_steps}, "
            f"quasi_newton={self.quasi_newton!r})"
        )
