r"""Loss balancers: positive per-term weights :math:`w_i` for the PINN loss
:math:`L = \sum_i w_i L_i`, aimed at the Type I pathology (one term's gradient dwarfing the
others; see :mod:`pinn_exp.gradients`).

Every balancer is called once per training step with the detached loss values and, if it
declares ``needs_gradients``, the :math:`K \times P` per-term gradient matrix. It returns
detached, positive, finite weights. Balancers with state expose ``state_dict`` /
``load_state_dict`` so that a resumed run reproduces the weights of an uninterrupted one exactly.
"""

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["Balancer", "NoBalancer", "EMABalancer", "LRABalancer", "ReLoBRaLoBalancer"]


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_unit_interval(name: str, value: float, *, closed_right: bool = False) -> None:
    ok = _is_real(value) and (0.0 <= value <= 1.0 if closed_right else 0.0 <= value < 1.0)
    if not ok:
        allowed = "[0, 1]" if closed_right else "[0, 1)"
        raise ValueError(f"`{name}` must be a float in {allowed}; got {value!r}.")


def _check_positive(name: str, value: float) -> None:
    if not (_is_real(value) and value > 0 and math.isfinite(value)):
        raise ValueError(f"`{name}` must be a positive finite number; got {value!r}.")


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be an integer >= 1; got {value!r}.")


def _clone_state(value):
    return value.clone() if isinstance(value, Tensor) else value


class Balancer(ABC):
    r"""Abstract base class: maps the current losses (and optionally gradients) to weights.

    Subclasses set the class attribute ``needs_gradients``: when ``False`` the training loop may
    pass ``grads=None`` and take its fast path (a single backward of :math:`\sum_i w_i L_i`).
    """

    needs_gradients: bool = False

    @abstractmethod
    def weights(
        self,
        step: int,
        losses: Tensor,
        grads: Tensor | None,
        residual_mask: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        r"""Returns the :math:`(K,)` detached positive finite weights for this step.

        :param step: the training step, counted from 0.
        :param losses: :math:`(K,)` detached loss values :math:`L_i`.
        :param grads: :math:`(K, P)` per-term gradients, or ``None`` if ``needs_gradients`` is
            ``False``.
        :param residual_mask: :math:`(K,)` bool, ``True`` for PDE-residual terms.
        :param generator: source of randomness for stochastic balancers (the loop always passes
            its seeded generator; ``None`` falls back to torch's global generator). Balancers
            that draw nothing ignore it.
        """

    def state_dict(self) -> dict:
        """Returns a copy of the internal state (empty for stateless balancers)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores the state returned by :meth:`state_dict`."""
        if state:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: `state` has keys {sorted(state)}; "
                "this balancer is stateless and expects an empty dict."
            )

    def _check_inputs(self, losses: Tensor, grads: Tensor | None, residual_mask: Tensor) -> None:
        if losses.dim() != 1:
            raise ValueError(f"`losses` has shape {tuple(losses.shape)}; expected (K,).")
        k = losses.shape[0]
        if residual_mask.shape != (k,) or residual_mask.dtype != torch.bool:
            raise ValueError(
                f"`residual_mask` has shape {tuple(residual_mask.shape)} and dtype "
                f"{residual_mask.dtype}; expected a ({k},) bool tensor."
            )
        if self.needs_gradients:
            if grads is None or grads.dim() != 2 or grads.shape[0] != k:
                got = None if grads is None else tuple(grads.shape)
                raise ValueError(
                    f"{type(self).__name__} needs gradients: `grads` is {got}; expected (K, P) "
                    f"with K = {k}."
                )
            if not torch.isfinite(grads).all():
                raise ValueError("`grads` contains non-finite values; cannot compute weights.")


class NoBalancer(Balancer):
    """All weights equal to 1: the plain sum of the loss terms."""

    needs_gradients = False

    def weights(
        self,
        step: int,
        losses: Tensor,
        grads: Tensor | None,
        residual_mask: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        self._check_inputs(losses, grads, residual_mask)
        return torch.ones_like(losses).detach()

    def __repr__(self) -> str:
        return "NoBalancer()"


class EMABalancer(Balancer):
    r"""Dynamic gradient balancing (DB-PINN style): weights inversely proportional to a
    bias-corrected exponential moving average of each term's gradient norm.

    Every step, with :math:`n_i = \|\nabla_\theta L_i\|`,

    .. math::

        m_i \leftarrow a\, m_i + (1 - a)\, n_i, \qquad c \leftarrow a\, c + (1 - a), \qquad
        \hat m_i = m_i / c,

    starting from :math:`m_i = c = 0`, so that :math:`c = 1 - a^t` after :math:`t` updates: the
    bias correction of Adam (Kingma & Ba 2015). Every ``update_every`` steps (and at step 0) the
    weights are recomputed as

    .. math::

        w_i = \frac{\bar m}{\hat m_i + \varepsilon \bar m}, \qquad
        \bar m = \frac{1}{K} \sum_j \hat m_j,

    and held in between, so that every weighted gradient norm :math:`w_i \hat m_i` is close to
    the common :math:`\bar m`: the small terms are amplified, the dominant one damped. (A larger
    gradient gets a *smaller* weight; weighting the other way round amplifies the imbalance.)

    :param alpha: EMA decay :math:`a \in [0, 1)`.
    :param update_every: recompute the weights every this many steps (>= 1).
    :param eps: relative floor, :math:`w_i \le 1/\varepsilon`. It is relative to :math:`\bar m`
        so that the weights are invariant to a common rescaling of all terms (an absolute floor
        would distort terms whose gradients are below it, e.g. ~1e-10). If every norm is 0 the
        weights are all 1.
    """

    needs_gradients = True

    def __init__(self, alpha: float = 0.999, update_every: int = 100, eps: float = 1e-12):
        _check_unit_interval("alpha", alpha)
        _check_positive_int("update_every", update_every)
        _check_positive("eps", eps)
        self.alpha = alpha
        self.update_every = update_every
        self.eps = eps
        self._ema: Tensor | None = None
        # The bias-correction denominator is tracked by the same recursion as the EMA, not as
        # 1 - a^t: for a constant norm both then round identically and m / c returns it exactly.
        self._correction = 0.0
        self._weights: Tensor | None = None

    def corrected_norms(self) -> Tensor | None:
        r"""The current bias-corrected EMA :math:`\hat m` (``None`` before the first step)."""
        return None if self._ema is None else self._ema / self._correction

    def weights(
        self,
        step: int,
        losses: Tensor,
        grads: Tensor | None,
        residual_mask: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        self._check_inputs(losses, grads, residual_mask)
        with torch.no_grad():
            norms = torch.linalg.vector_norm(grads.detach(), dim=1)
            if self._ema is None:
                self._ema = torch.zeros_like(norms)
            self._ema = self.alpha * self._ema + (1.0 - self.alpha) * norms
            self._correction = self.alpha * self._correction + (1.0 - self.alpha)
            if self._weights is None or step % self.update_every == 0:
                m_hat = self._ema / self._correction
                mean = m_hat.mean()
                if mean > 0:
                    self._weights = mean / (m_hat + self.eps * mean)
                else:
                    self._weights = torch.ones_like(m_hat)
        return self._weights.clone()

    def state_dict(self) -> dict:
        return {
            "ema": _clone_state(self._ema),
            "correction": self._correction,
            "weights": _clone_state(self._weights),
        }

    def load_state_dict(self, state: dict) -> None:
        self._ema = _clone_state(state["ema"])
        self._correction = float(state["correction"])
        self._weights = _clone_state(state["weights"])

    def __repr__(self) -> str:
        return f"EMABalancer(alpha={self.alpha}, update_every={self.update_every}, eps={self.eps})"


class LRABalancer(Balancer):
    r"""Learning-rate annealing of Wang, Teng & Perdikaris (2021), "Understanding and
    mitigating gradient flow pathologies in physics-informed neural networks" (Algorithm 1).

    Every ``update_every`` steps (and at step 0), for each non-residual term :math:`i`,

    .. math::

        \hat\lambda_i = \frac{\max_{r,\,p} |\partial_{\theta_p} L_r|}
                             {\operatorname{mean}_p |\partial_{\theta_p} L_i|}, \qquad
        \lambda_i \leftarrow (1 - \alpha)\, \lambda_i + \alpha\, \hat\lambda_i,

    the maximum running over every entry of every residual row :math:`r`. Residual terms keep
    weight 1; weights start at 1 and are held between updates.

    :param alpha: weight :math:`\alpha \in (0, 1]` of the fresh estimate in the moving average.
    :param update_every: update the weights every this many steps (>= 1).
    :param eps: relative floor on the denominator, :math:`\hat\lambda_i \le 1/\varepsilon`, for
        terms with (near-)zero gradient.
    """

    needs_gradients = True

    def __init__(self, alpha: float = 0.1, update_every: int = 10, eps: float = 1e-12):
        if not (_is_real(alpha) and 0.0 < alpha <= 1.0):
            raise ValueError(f"`alpha` must be a float in (0, 1]; got {alpha!r}.")
        _check_positive_int("update_every", update_every)
        _check_positive("eps", eps)
        self.alpha = alpha
        self.update_every = update_every
        self.eps = eps
        self._weights: Tensor | None = None

    def weights(
        self,
        step: int,
        losses: Tensor,
        grads: Tensor | None,
        residual_mask: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        self._check_inputs(losses, grads, residual_mask)
        if not residual_mask.any():
            raise ValueError(
                "LRABalancer: `residual_mask` has no True entry; LRA needs at least "
                "one PDE-residual term to scale the others against."
            )
        with torch.no_grad():
            if self._weights is None:
                self._weights = torch.ones_like(losses)
            if step % self.update_every == 0:
                grads = grads.detach().abs()
                max_res = grads[residual_mask].max()
                mean_abs = grads.mean(dim=1)
                estimate = max_res / torch.maximum(mean_abs, self.eps * max_res)
                # When every gradient is exactly 0 the estimate is 0/0: keep the old weight.
                estimate = torch.where(torch.isnan(estimate), self._weights, estimate)
                updated = (1.0 - self.alpha) * self._weights + self.alpha * estimate
                self._weights = torch.where(residual_mask, torch.ones_like(updated), updated)
        return self._weights.clone()

    def state_dict(self) -> dict:
        return {"weights": _clone_state(self._weights)}

    def load_state_dict(self, state: dict) -> None:
        self._weights = _clone_state(state["weights"])

    def __repr__(self) -> str:
        return f"LRABalancer(alpha={self.alpha}, update_every={self.update_every}, eps={self.eps})"


class ReLoBRaLoBalancer(Balancer):
    r"""Relative Loss Balancing with Random Lookback of Bischof & Kraus (2021), "Multi-Objective
    Loss Balancing for Physics-Informed Deep Learning" (arXiv:2110.09813). Uses losses only.

    With the balanced weights of relative progress between steps :math:`t'` and :math:`t`,

    .. math::

        \hat\lambda_i(t, t') = K \operatorname{softmax}_i\!\Big(
            \frac{L_i(t)}{T\, L_i(t')}\Big),

    the weights are

    .. math::

        \lambda_i(t) = \alpha\big(\rho\, \lambda_i(t-1) + (1 - \rho)\, \hat\lambda_i(t, 0)\big)
                     + (1 - \alpha)\, \hat\lambda_i(t, t-1),
        \qquad \rho \sim \operatorname{Bernoulli}(\bar\rho),

    where the "random lookback" :math:`\rho = 0` occasionally resets the history to the progress
    since the first step. As in the authors' code, the first call returns all ones (and records
    :math:`L(0)`), the second uses :math:`\alpha = 0` (no history yet), and :math:`\rho` is drawn
    (one draw from ``generator``) from the third call on. The weights sum to :math:`K`: each
    :math:`\hat\lambda` does, and :math:`\lambda(t)` is a convex combination of them and
    :math:`\lambda(t-1)` (up to a floor at the smallest normal float, so that no weight underflows
    to exactly 0 when a loss ratio exceeds ~700 T).

    The authors' code divides by :math:`T L_i(t') + 10^{-12}`; here the ratio is scale free (a
    loss that was exactly 0 counts as unchanged if it stays 0 and as the largest finite ratio if
    it becomes positive), so that losses of order 1e-20 are balanced like losses of order 1.

    :param alpha: weight :math:`\alpha \in [0, 1]` of the history.
    :param temperature: softmax temperature :math:`T > 0`.
    :param rho: expectation :math:`\bar\rho \in [0, 1]` of the Bernoulli lookback variable.
    """

    needs_gradients = False

    def __init__(self, alpha: float = 0.999, temperature: float = 0.1, rho: float = 0.999):
        _check_unit_interval("alpha", alpha, closed_right=True)
        _check_positive("temperature", temperature)
        _check_unit_interval("rho", rho, closed_right=True)
        self.alpha = alpha
        self.temperature = temperature
        self.rho = rho
        self._calls = 0
        self._initial: Tensor | None = None
        self._previous: Tensor | None = None
        self._weights: Tensor | None = None

    def _balanced(self, losses: Tensor, reference: Tensor) -> Tensor:
        # L(t) / L(t') without an absolute epsilon; 0 -> 0 counts as unchanged (ratio 1), and
        # 0 -> positive as the largest finite ratio. softmax subtracts the max, so it stays finite.
        huge = torch.finfo(losses.dtype).max
        positive = reference > 0
        ratio = torch.where(
            positive,
            losses / torch.where(positive, reference, torch.ones_like(reference)),
            torch.where(losses > 0, torch.full_like(losses, huge), torch.ones_like(losses)),
        )
        logits = torch.nan_to_num(ratio / self.temperature, posinf=huge)
        return losses.shape[0] * torch.softmax(logits, dim=0)

    def weights(
        self,
        step: int,
        losses: Tensor,
        grads: Tensor | None,
        residual_mask: Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        self._check_inputs(losses, grads, residual_mask)
        with torch.no_grad():
            losses = losses.detach()
            if self._calls == 0:
                self._initial = losses.clone()
                self._weights = torch.ones_like(losses)
            else:
                progress = self._balanced(losses, self._previous)
                if self._calls == 1:
                    self._weights = progress
                else:
                    device = generator.device if generator is not None else None
                    draw = torch.rand((), dtype=losses.dtype, generator=generator, device=device)
                    rho = 1.0 if draw < self.rho else 0.0
                    history = rho * self._weights + (1.0 - rho) * self._balanced(
                        losses, self._initial
                    )
                    self._weights = self.alpha * history + (1.0 - self.alpha) * progress
            # exp underflows for a loss ratio beyond ~700 T. Weights are promised positive (a 0
            # breaks log-scale logging and anything dividing by a weight): floor at the smallest
            # normal float, which leaves the sum K unchanged to rounding.
            self._weights = self._weights.clamp_min(torch.finfo(losses.dtype).tiny)
            self._previous = losses.clone()
            self._calls += 1
        return self._weights.clone()

    def state_dict(self) -> dict:
        return {
            "calls": self._calls,
            "initial": _clone_state(self._initial),
            "previous": _clone_state(self._previous),
            "weights": _clone_state(self._weights),
        }

    def load_state_dict(self, state: dict) -> None:
        self._calls = int(state["calls"])
        self._initial = _clone_state(state["initial"])
        self._previous = _clone_state(state["previous"])
        self._weights = _clone_state(state["weights"])

    def __repr__(self) -> str:
        return (
            f"ReLoBRaLoBalancer(alpha={self.alpha}, temperature={self.temperature}, rho={self.rho})"
        )
