"""Training phases: a run is a first-order method (Adam or SOAP) for a number of steps, then
optionally a quasi-Newton phase.

Each phase owns its optimizer state and performs one iteration when the loop asks:
- :class:`AdamPhase` (and :class:`SOAPPhase`) takes a direction: the loop writes the surgery's
  (or the plain sum's) gradient to ``.grad`` and the phase steps along it;
- :class:`QuasiNewtonPhase` needs a loss to line-search, so it minimises the weighted sum of the
  terms itself (surgery, which yields no loss, acts in the Adam phase only).
Both expose :meth:`precondition`, the map from a gradient to the update it would produce, so the
gradient-alignment diagnostics (Wang et al. 2025) compare the terms as each optimizer sees them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from pinn_exp.gradients import per_term_gradients
from pinn_exp.quasi_newton import Curvature, DenseInverseHessian, LimitedMemory, QuasiNewton, Update

log = logging.getLogger(__name__)

Terms = Callable[[], dict[str, Tensor]]
"""The named loss terms at the current parameters and collocation points."""


def flatten(params: Sequence[Tensor]) -> Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


@torch.no_grad()
def assign(params: Sequence[Tensor], x: Tensor) -> None:
    offset = 0
    for p in params:
        p.copy_(x[offset : offset + p.numel()].view_as(p))
        offset += p.numel()


class AdamPhase:
    """Adam with its learning-rate schedule, stepping along the gradient the loop wrote."""

    takes_direction = True
    name = "adam"

    def __init__(self, optimizer: torch.optim.Optimizer, scheduler) -> None:
        self.optimizer, self.scheduler = optimizer, scheduler

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        self.optimizer.step()
        self.scheduler.step()

    def scalars(self) -> dict[str, float]:
        return {"lr": self.optimizer.param_groups[0]["lr"]}

    def summary(self) -> dict[str, float]:
        return {}

    def precondition(self, grads: Tensor) -> Tensor:
        """Adam's diagonal preconditioner 1 / (sqrt(v_hat) + eps) applied to each row."""
        scale = []
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                state = self.optimizer.state.get(p, {})
                if "exp_avg_sq" not in state:
                    scale.append(torch.ones(p.numel(), dtype=grads.dtype, device=grads.device))
                    continue
                bias = 1 - group["betas"][1] ** float(state["step"])
                v_hat = state["exp_avg_sq"].reshape(-1) / bias
                scale.append(1.0 / (v_hat.sqrt() + group["eps"]))
        return grads * torch.cat(scale)

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])


class SOAPPhase(AdamPhase):
    """SOAP (Vyas et al. 2024, arXiv:2409.11321): Adam run in the eigenbasis of Shampoo's
    Kronecker factors, as used for PINNs by Wang et al. 2025 (arXiv:2502.00604). The optimizer
    is ``pytorch_optimizer.SOAP`` (version pinned in pyproject.toml), stepping along the
    direction the loop wrote, like Adam; the unknowns' group, decay and warm-up are the same.

    The library follows the reference implementation in two ways worth knowing: its first step
    only initialises the preconditioner (the parameters move from the second step on), and the
    periodic eigenbasis refresh (one power iteration and a QR) runs its QR in float32, so the
    basis is orthogonal to about 1e-7 even in a float64 run. Each 2-D weight of shape (m, n) is
    rotated by an m x m and an n x n basis; 1-D biases and scalar unknowns are not rotated, so
    for them SOAP is Adam.
    """

    name = "soap"

    def precondition(self, grads: Tensor) -> Tensor:
        """SOAP's preconditioner applied to each row exactly: rotate into the current
        eigenbasis Q, divide by ``sqrt(v_hat) + eps`` (the bias-corrected second moment, which
        SOAP keeps in that basis), rotate back. It is the map SOAP applies to its momentum, so
        with ``betas[0] = 0`` a row equal to the step's gradient gives the step's direction
        (unless that step refreshed Q). A parameter without second-moment statistics yet
        (before the second step) is left as it is (identity).
        """
        optimizer = self.optimizer
        rows = []
        for g in grads:
            out, offset = [], 0
            for group in optimizer.param_groups:
                moments = group.get("step", 0) - 1  # the first step updates no moment
                bias = 1 - group["betas"][1] ** moments
                for p in group["params"]:
                    piece = g[offset : offset + p.numel()]
                    offset += p.numel()
                    state = optimizer.state.get(p, {})
                    if moments < 1 or "exp_avg_sq" not in state:
                        out.append(piece)
                        continue
                    kw = {
                        "merge_dims": group["merge_dims"],
                        "max_precondition_dim": group["max_precondition_dim"],
                    }
                    rotated = optimizer.project(piece.view_as(p), state, **kw)
                    rotated = rotated / ((state["exp_avg_sq"] / bias).sqrt() + group["eps"])
                    back = optimizer.project(rotated, state, project_type="backward", **kw)
                    out.append(back.reshape(-1))
            rows.append(torch.cat(out))
        return torch.stack(rows)


TRANSFORMS: dict[str, Callable[[Tensor], Tensor]] = {
    "none": lambda loss: loss,
    "sqrt": torch.sqrt,
    "log": torch.log,
}


class QuasiNewtonPhase:
    """Line-searched quasi-Newton iterations on the weighted sum of the terms (weights fixed
    by the loop), over the network's parameters and any unknowns, as one flat vector.

    ``loss_transform`` minimises ``sqrt`` or ``log`` of the weighted sum instead (as in Urbán et
    al. 2025 and Kiyani et al. 2025): the same minimiser, a differently scaled landscape.
    """

    takes_direction = False
    name = "quasi_newton"

    def __init__(self, params: Sequence[nn.Parameter], qn: QuasiNewton, loss_transform: str):
        if loss_transform not in TRANSFORMS:
            raise ValueError(
                f"optim.quasi_newton.loss_transform={loss_transform!r} is not allowed: "
                f"one of {', '.join(TRANSFORMS)}"
            )
        self.params, self.qn = list(params), qn
        self.transform = TRANSFORMS[loss_transform]
        self.info = None
        self._terms: dict[float, Tensor] = {}

    def objective_changed(self) -> None:
        """The points or the weights changed: the cached value and gradient are stale."""
        self.qn.objective_changed()

    def step(self, terms: Terms, weights: Tensor) -> Tensor:
        """One iteration; returns the (detached) loss terms at the accepted point."""
        evaluated: dict[float, Tensor] = {}

        def objective(x: Tensor) -> tuple[float, Tensor]:
            assign(self.params, x)
            values = torch.stack(list(terms().values()))
            loss = self.transform((weights.to(values) * values).sum())
            (flat,) = per_term_gradients([loss], self.params)
            # The line search returns one of the values it evaluated: remember each one's terms.
            evaluated[float(loss.detach())] = values.detach()
            return float(loss.detach()), flat

        x_new, self.info = self.qn.step(objective, flatten(self.params))
        assign(self.params, x_new)
        if self.info.reset:
            log.info(
                "quasi-Newton: H reset to the identity at iteration %d (%s)",
                self.qn.iteration,
                self.info.reset,
            )
        found = evaluated.get(self.info.value, self._terms.get(self.info.value))
        if found is None or not math.isfinite(self.info.value):  # a non-finite value: diverged
            nan = torch.full((len(weights),), float("nan"), dtype=torch.float64)
            found = nan if found is None else found
        self._terms = {self.info.value: found}
        return found

    def scalars(self) -> dict[str, float]:
        if self.info is None:
            return {}
        out = {
            "qn/line_search_evals": float(self.info.evaluations),
            "qn/step_length": self.info.step_length,
            "qn/grad_norm": self.info.grad_norm,
            "qn/resets": float(self.qn.resets),
            "qn/skipped_update": float(self.info.skipped_update),
        }
        return out | {f"qn/{k}": float(v) for k, v in (self.info.extra or {}).items()}

    def summary(self) -> dict[str, float]:
        """For metrics.json: evaluations per iteration and the number of H resets."""
        qn = self.qn
        per_iteration = qn.evaluations / qn.iteration if qn.iteration else float("nan")
        return {"qn_evals_per_iteration": per_iteration, "qn_resets": qn.resets}

    def precondition(self, grads: Tensor) -> Tensor:
        """Each row's quasi-Newton step ``-H g`` with the sign flipped back (``H g``)."""
        return torch.stack([-self.qn.curvature.direction(g) for g in grads])

    def state_dict(self) -> dict:
        return {"qn": self.qn.state_dict(), "terms": self._terms}

    def load_state_dict(self, state: dict) -> None:
        self.qn.load_state_dict(state["qn"])
        self._terms = state["terms"]


class QuasiNewtonSpec:
    """The quasi-Newton phase's settings, as the ``optim.quasi_newton`` config block.

    ``update`` is a dense inverse-Hessian rule (:class:`~pinn_exp.quasi_newton.SSBroyden`,
    ``SSBFGS``, ``BFGS``); ``update=None`` selects L-BFGS with ``history_size`` pairs.
    ``refresh_weights``: the balancer's weights are recomputed at each resampling instead of
    frozen at the end of Adam.
    """

    def __init__(
        self,
        update: Update | None = None,
        history_size: int = 50,
        max_params: int = 10_000,
        c1: float = 1e-4,
        c2: float = 0.9,
        max_line_search: int = 25,
        pd_check_every: int = 100,
        loss_transform: str = "none",
        refresh_weights: bool = False,
    ):
        if not (isinstance(pd_check_every, int) and pd_check_every >= 0):
            raise ValueError(
                f"optim.quasi_newton.pd_check_every must be an integer >= 0, got {pd_check_every!r}"
            )
        if not (isinstance(max_line_search, int) and max_line_search >= 1):
            raise ValueError(
                "optim.quasi_newton.max_line_search must be an integer >= 1, "
                f"got {max_line_search!r}"
            )
        self.update, self.history_size, self.max_params = update, history_size, max_params
        self.c1, self.c2, self.max_line_search = c1, c2, max_line_search
        self.pd_check_every, self.loss_transform = pd_check_every, loss_transform
        self.refresh_weights = refresh_weights

    def build(self, params: Sequence[nn.Parameter]) -> QuasiNewtonPhase:
        n = sum(p.numel() for p in params)
        like = params[0]
        curvature: Curvature
        if self.update is None:
            curvature = LimitedMemory(n, like.dtype, like.device, self.history_size)
        else:
            curvature = DenseInverseHessian(
                n, self.update, like.dtype, like.device, self.max_params
            )
        qn = QuasiNewton(curvature, self.c1, self.c2, self.max_line_search, self.pd_check_every)
        return QuasiNewtonPhase(params, qn, self.loss_transform)

    def __repr__(self) -> str:
        return (
            f"QuasiNewtonSpec(update={self.update!r}, history_size={self.history_size}, "
            f"loss_transform={self.loss_transform!r}, refresh_weights={self.refresh_weights})"
        )
