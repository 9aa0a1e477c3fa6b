r"""Quasi-Newton minimisation in float64 torch: self-scaled inverse-Hessian updates (dense) and
L-BFGS (limited memory), with a strong-Wolfe line search.

The inverse-Hessian approximation :math:`H_k \approx \nabla^2 L^{-1}` gives the direction
:math:`d_k = -H_k g_k`; a line search picks :math:`\alpha_k`, and with
:math:`s_k = \alpha_k d_k`, :math:`y_k = g_{k+1} - g_k`, :math:`\rho_k = 1 / y_k^\top s_k` every
update below satisfies the secant condition :math:`H_{k+1} y_k = s_k`.

The self-scaled Broyden family (Al-Baali 1998; Urbán, Stefanou & Pons 2025, J. Comput. Phys.,
"Unveiling the optimization process of physics informed neural networks: how accurate and
competitive can PINNs be?", eqs. 9-23; Kiyani et al. 2025, "Which optimizer works best for
physics-informed neural networks and Kolmogorov-Arnold networks?") writes every update as

.. math::
    H_{k+1} = \frac{1}{\tau_k}\Big(H_k - \frac{H_k y_k y_k^\top H_k}{y_k^\top H_k y_k}
              + \phi_k\, (y_k^\top H_k y_k)\, v_k v_k^\top\Big) + \rho_k s_k s_k^\top,
    \qquad v_k = \rho_k s_k - \frac{H_k y_k}{y_k^\top H_k y_k},

with :math:`\phi_k = 1, \tau_k = 1` plain BFGS, :math:`\phi_k = 1` and a scale :math:`\tau_k`
self-scaled BFGS, and :math:`(\phi_k, \tau_k)` from the curvature ratios
:math:`b_k = s_k^\top B_k s_k\,\rho_k = -\alpha_k \rho_k s_k^\top g_k` and
:math:`h_k = \rho_k\, y_k^\top H_k y_k` self-scaled Broyden (SSBroyden2 in Urbán et al.).

What is reused and why: the line search is torch's own strong-Wolfe search
(``torch.optim.lbfgs._strong_wolfe``, cubic interpolation, Nocedal & Wright Alg. 3.5/3.6): it runs
on any device, in float64, with no new dependency. ``pytorch-minimize`` has a dense BFGS with the
same kind of line search but no self-scaled updates and no way to carry :math:`H` across a change
of the objective (collocation resampling); SciPy's BFGS accepts ``hess_inv0`` but runs in NumPy on
the CPU only. So the updates and the iteration are ours, ~150 lines, tested on quadratics and
Rosenbrock (``tests/test_quasi_newton.py``).

Memory: a dense :math:`H` holds :math:`P^2` float64 values (P = 2,011 parameters: 32 MB;
P = 20,000: 3.2 GB); :class:`DenseInverseHessian` refuses more than ``max_params``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.optim.lbfgs import _strong_wolfe

__all__ = [
    "BFGS",
    "SSBFGS",
    "SSBroyden",
    "DenseInverseHessian",
    "LimitedMemory",
    "QuasiNewton",
    "IterationInfo",
]

Objective = Callable[[Tensor], tuple[float, Tensor]]
"""``f(x) -> (value, flat gradient)`` for a flat parameter vector ``x``."""


# --- inverse-Hessian updates -------------------------------------------------------------------
class Update(ABC):
    """One rule :math:`H_k \\to H_{k+1}`; ``first`` marks the first update from the identity."""

    @abstractmethod
    def scaling(self, b: float, h: float, first: bool, y: Tensor, s: Tensor) -> tuple[float, float]:
        """Returns ``(phi, tau)`` for the curvature ratios ``b`` and ``h``."""

    def __call__(self, H: Tensor, s: Tensor, y: Tensor, g: Tensor, alpha: float, first: bool):
        rho = 1.0 / float(y @ s)
        Hy = H @ y
        yHy = float(y @ Hy)
        h = yHy * rho
        b = -alpha * rho * float(s @ g)
        phi, tau = self.scaling(b, h, first, y, s)
        v = rho * s - Hy / yHy
        # H <- H / tau + U diag(c) U^T with U = [Hy, v, s]: one pass over the P x P matrix (the
        # three rank-one updates and the division cost ~4x more, measured at P = 2,011). Written
        # as A (sign * A)^T with A = U sqrt|c|, so that entries (i, j) and (j, i) are the same
        # products: H stays exactly symmetric.
        c = torch.tensor([-1.0 / (yHy * tau), phi * yHy / tau, rho], dtype=H.dtype, device=H.device)
        a = torch.stack([Hy, v, s], 1) * c.abs().sqrt()
        H.addmm_(a, (a * c.sign()).T, beta=1.0 / tau)
        return phi, tau

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BFGS(Update):
    """Broyden-Fletcher-Goldfarb-Shanno (phi = 1, tau = 1), with the initial scaling
    :math:`H_0 = (y^\\top s / y^\\top y) I` of Nocedal & Wright (eq. 6.20) at the first update."""

    def scaling(self, b, h, first, y, s):
        return 1.0, (float(y @ y) / float(y @ s) if first else 1.0)


class SSBFGS(Update):
    """Self-scaled BFGS: phi = 1 and :math:`\\tau_k = \\min(1, 1/b_k)` (Al-Baali 1998, "Numerical
    experience with a class of self-scaling quasi-Newton algorithms", JOTA 96; eq. 11 of Urbán
    et al. 2025); ``variant="ol"`` takes Oren & Luenberger's :math:`\\tau_k = 1/b_k`."""

    def __init__(self, variant: str = "ab"):
        if variant not in ("ab", "ol"):
            raise ValueError(f"optim.quasi_newton.update.variant must be ab or ol, got {variant!r}")
        self.variant = variant

    def scaling(self, b, h, first, y, s):
        if first:
            return 1.0, float(y @ y) / float(y @ s)
        return 1.0, (min(1.0, 1.0 / b) if self.variant == "ab" else 1.0 / b)

    def __repr__(self) -> str:
        return f"SSBFGS(variant={self.variant!r})"


class SSBroyden(Update):
    """Self-scaled Broyden update, SSBroyden2 of Urbán, Stefanou & Pons 2025 (eqs. 13-23), after
    Al-Baali's self-scaled Broyden family.

    With :math:`a_k = b_k h_k - 1 \\ge 0`, :math:`c_k = \\sqrt{a_k / (1 + a_k)}`,
    :math:`\\rho^-_k = \\min(1, h_k (1 - c_k))`, :math:`\\theta^-_k = (\\rho^-_k - 1) / a_k`,
    :math:`\\theta^+_k = 1 / \\rho^-_k`:
    :math:`\\theta_k = \\max(\\theta^-_k, \\min(\\theta^+_k, (1 - b_k) / b_k))`,
    :math:`\\phi_k = (1 - \\theta_k) / (1 + a_k \\theta_k)`, :math:`\\sigma_k = 1 + a_k \\theta_k`,
    and with :math:`\\rho^+_k = \\min(1, 1/b_k)`, :math:`\\sigma^{(n)}_k = |\\sigma_k|^{1/(1-n)}`:
    :math:`\\tau_k = \\min(\\rho^+_k \\sigma^{(n)}_k, \\sigma_k)` if :math:`\\theta_k \\le 0`, else
    :math:`\\tau_k = \\rho^+_k \\min(\\sigma^{(n)}_k, 1/\\theta_k)`. The first update from the
    identity uses :math:`\\tau_0 = h_0 / (1 + a_0 \\theta_0)`.
    """

    def scaling(self, b, h, first, y, s):
        n = s.numel()
        a = max(b * h - 1.0, 0.0)  # >= 0 by Cauchy-Schwarz; clipped against rounding
        if a < 1e-14:
            # H is exact along s (b = h = 1): every member of the family coincides; take BFGS.
            return 1.0, (h if first else 1.0)
        c = math.sqrt(a / (1.0 + a))
        rho_minus = max(min(1.0, h * (1.0 - c)), 1e-12)
        theta_minus = (rho_minus - 1.0) / a
        theta_plus = 1.0 / rho_minus
        theta = max(theta_minus, min(theta_plus, (1.0 - b) / b))
        sigma = 1.0 + a * theta
        phi = (1.0 - theta) / sigma
        if first:
            return phi, h / sigma
        rho_plus = min(1.0, 1.0 / b)
        sigma_n = abs(sigma) ** (1.0 / (1 - n)) if n > 1 else 1.0
        tau = min(rho_plus * sigma_n, sigma) if theta <= 0 else rho_plus * min(sigma_n, 1 / theta)
        return phi, tau


# --- the curvature store: dense or limited memory ----------------------------------------------
class Curvature(ABC):
    """What the iteration needs of an inverse-Hessian approximation."""

    @abstractmethod
    def direction(self, g: Tensor) -> Tensor: ...

    @abstractmethod
    def update(self, s: Tensor, y: Tensor, g: Tensor, alpha: float) -> dict[str, float]: ...

    @abstractmethod
    def reset(self) -> None: ...

    @abstractmethod
    def is_identity(self) -> bool: ...

    @abstractmethod
    def positive_definite(self) -> bool: ...

    @abstractmethod
    def state_dict(self) -> dict: ...

    @abstractmethod
    def load_state_dict(self, state: dict) -> None: ...


class DenseInverseHessian(Curvature):
    """A dense P x P inverse Hessian, updated by ``update``; symmetrised after every update.

    Refuses ``P > max_params`` (P^2 float64 values: 10,000 parameters take 0.8 GB).
    """

    def __init__(self, n: int, update: Update, dtype, device, max_params: int = 10_000):
        if n > max_params:
            gb = 8 * n * n / 1e9
            raise ValueError(
                f"a dense inverse Hessian for {n} parameters needs {gb:.1f} GB (P^2 float64), "
                f"above optim.quasi_newton.max_params={max_params}: make the network smaller "
                "(model.width, model.depth) or use optim=lbfgs"
            )
        self.rule = update
        self.H = torch.eye(n, dtype=dtype, device=device)
        self.fresh = True  # H is the identity: the next update applies the initial scaling

    def direction(self, g):
        return -(self.H @ g)

    def update(self, s, y, g, alpha):
        phi, tau = self.rule(self.H, s, y, g, alpha, self.fresh)
        self.fresh = False
        return {"phi": phi, "tau": tau}

    def reset(self):
        self.H = torch.eye(self.H.shape[0], dtype=self.H.dtype, device=self.H.device)
        self.fresh = True

    def is_identity(self):
        return self.fresh

    def positive_definite(self):
        # The update keeps H symmetric entry by entry; symmetrising here as well guards the
        # Cholesky check (which reads one triangle) against any drift.
        self.H = 0.5 * (self.H + self.H.T)
        return int(torch.linalg.cholesky_ex(self.H).info) == 0

    def state_dict(self):
        return {"H": self.H.clone(), "fresh": self.fresh}

    def load_state_dict(self, state):
        self.H = state["H"].to(self.H)
        self.fresh = state["fresh"]

    def __repr__(self) -> str:
        return f"DenseInverseHessian(update={self.rule!r})"


class LimitedMemory(Curvature):
    """L-BFGS (Liu & Nocedal 1989): the last ``history_size`` pairs (s, y) and the two-loop
    recursion with :math:`H_0 = (s^\\top y / y^\\top y) I`; memory O(history_size P)."""

    def __init__(self, n: int, dtype, device, history_size: int = 50):
        if history_size < 1:
            raise ValueError(f"optim.quasi_newton.history_size must be >= 1, got {history_size}")
        self.history_size = history_size
        self.s: list[Tensor] = []
        self.y: list[Tensor] = []

    def direction(self, g):
        q = -g.clone()
        rhos = [1.0 / float(y @ s) for s, y in zip(self.s, self.y)]
        alphas = []
        for s, y, rho in reversed(list(zip(self.s, self.y, rhos))):
            a = rho * float(s @ q)
            alphas.append(a)
            q.add_(y, alpha=-a)
        if self.s:
            q.mul_(float(self.s[-1] @ self.y[-1]) / float(self.y[-1] @ self.y[-1]))
        for (s, y, rho), a in zip(zip(self.s, self.y, rhos), reversed(alphas)):
            q.add_(s, alpha=a - rho * float(y @ q))
        return q

    def update(self, s, y, g, alpha):
        self.s.append(s.clone())
        self.y.append(y.clone())
        if len(self.s) > self.history_size:
            self.s.pop(0)
            self.y.pop(0)
        return {}

    def reset(self):
        self.s.clear()
        self.y.clear()

    def is_identity(self):
        return not self.s

    def positive_definite(self):
        return True  # by construction, since every stored pair has y^T s > 0

    def state_dict(self):
        return {"s": [t.clone() for t in self.s], "y": [t.clone() for t in self.y]}

    def load_state_dict(self, state):
        self.s, self.y = list(state["s"]), list(state["y"])

    def __repr__(self) -> str:
        return f"LimitedMemory(history_size={self.history_size})"


# --- the iteration ------------------------------------------------------------------------------
@dataclass
class IterationInfo:
    """What one iteration did, for logging."""

    value: float
    grad_norm: float
    step_length: float
    evaluations: int
    reset: str = ""  # why H was reset this iteration ("" when it was not)
    skipped_update: bool = False
    extra: dict | None = None


class QuasiNewton:
    """Line-searched quasi-Newton iterations on a flat vector, one per :meth:`step`.

    The objective may change between iterations (new collocation points): call
    :meth:`objective_changed` and the cached value and gradient are recomputed, while the
    curvature (H) is carried over. H is reset to the identity, and the reset reported, when the
    direction is not a descent direction or when the periodic Cholesky check (every
    ``pd_check_every`` iterations, O(P^3)) finds H not positive definite.
    """

    def __init__(
        self,
        curvature: Curvature,
        c1: float = 1e-4,
        c2: float = 0.9,
        max_line_search: int = 25,
        pd_check_every: int = 100,
    ):
        if not 0 < c1 < c2 < 1:
            raise ValueError(f"optim.quasi_newton needs 0 < c1 < c2 < 1, got c1={c1}, c2={c2}")
        self.curvature = curvature
        self.c1, self.c2, self.max_line_search = c1, c2, max_line_search
        self.pd_check_every = pd_check_every
        self.iteration = 0
        self.resets = 0
        self.evaluations = 0  # objective evaluations over all iterations
        self._f: float | None = None
        self._g: Tensor | None = None

    def objective_changed(self) -> None:
        self._f, self._g = None, None

    def step(self, objective: Objective, x: Tensor) -> tuple[Tensor, IterationInfo]:
        """One iteration from ``x``; returns the new point and what happened."""
        evaluations = 0
        if self._g is None:
            self._f, self._g = objective(x)
            evaluations += 1
        f, g = self._f, self._g
        if not float(g.abs().max()) > 0:  # a stationary point: nothing to do, and no direction
            self.iteration += 1
            self.evaluations += evaluations
            return x, IterationInfo(f, 0.0, 0.0, evaluations, skipped_update=True, extra={})
        reset = ""
        due = self.pd_check_every and self.iteration and self.iteration % self.pd_check_every == 0
        if due and not self.curvature.positive_definite():
            reset = "not positive definite"
            self.curvature.reset()
        d = self.curvature.direction(g)
        gtd = float(g @ d)
        if not gtd < 0:
            reset = "not a descent direction"
            self.curvature.reset()
            d = self.curvature.direction(g)
            gtd = float(g @ d)
        self.resets += bool(reset)
        # A unit step is the quasi-Newton step; from the identity it is scaled to the gradient.
        t = min(1.0, 1.0 / float(g.abs().sum())) if self.curvature.is_identity() else 1.0

        def along(x0, t, d):
            return objective(x0 + t * d)

        # torch's default stops zooming once the bracket moves x by < 1e-9 in absolute terms,
        # which near a minimum (tiny d) is every bracket: the search would return t = 0 forever.
        f_new, g_new, t, n = _strong_wolfe(
            along,
            x,
            t,
            d,
            f,
            g,
            gtd,
            c1=self.c1,
            c2=self.c2,
            tolerance_change=1e-16 * float(x.abs().max().clamp_min(1.0)),
            max_ls=self.max_line_search,
        )
        evaluations += n
        self.evaluations += evaluations
        s = t * d
        y = g_new - g
        extra, skipped = {}, False
        if float(y @ s) > 1e-12 * float(s @ s) ** 0.5 * float(y @ y) ** 0.5:
            extra = self.curvature.update(s, y, g, t)
        else:  # the curvature condition failed (line search gave up): keep H
            skipped = True
        self._f, self._g = float(f_new), g_new
        self.iteration += 1
        info = IterationInfo(
            value=float(f_new),
            grad_norm=float(g_new.norm()),
            step_length=float(t),
            evaluations=evaluations,
            reset=reset,
            skipped_update=skipped,
            extra=extra,
        )
        return x + s, info

    def state_dict(self) -> dict:
        return {
            "curvature": self.curvature.state_dict(),
            "iteration": self.iteration,
            "resets": self.resets,
            "evaluations": self.evaluations,
            "f": self._f,
            "g": None if self._g is None else self._g.clone(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.curvature.load_state_dict(state["curvature"])
        self.iteration, self.resets = state["iteration"], state["resets"]
        self.evaluations = state["evaluations"]
        self._f, self._g = state["f"], state["g"]

    def __repr__(self) -> str:
        return f"QuasiNewton(curvature={self.curvature!r}, c1={self.c1}, c2={self.c2})"
