r"""Gradient surgery: combine the weighted per-term gradients into one update direction, aimed at
the Type II pathology (terms whose gradients conflict in direction; see
:mod:`pinn_exp.gradients`).

Every method receives the :math:`K \times P` per-term gradient matrix :math:`G` (rows
:math:`g_i`), the balancer's weights :math:`w` and a seeded generator, and returns the
:math:`P`-vector that the training loop writes into ``.grad``. All of them work on the weighted
rows :math:`d_i = w_i g_i`. When no two rows conflict, PCGrad without GTN and UPGrad return
exactly the weighted sum :math:`\sum_i d_i`; PCGrad with GTN returns the sum of the normalised
rows, and ConFIG its own equal-angle direction.
"""

from abc import ABC, abstractmethod

import numpy as np
import torch
from scipy.optimize import nnls
from torch import Tensor
from torchjd.aggregation import ConFIG as _TorchJDConFIG
from torchjd.aggregation import UPGrad as _TorchJDUPGrad
from torchjd.linalg import DualConeProjector

__all__ = [
    "Surgery",
    "NoSurgery",
    "PCGrad",
    "UPGrad",
    "ConFIG",
    "NNLSProjector",
    "weighted_rows",
    "normalize_rows",
    "gradient_task_normalization",
    "pcgrad_orders",
    "project_conflicting",
]


def _check_eps(eps: float) -> None:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps < 1.0:
        raise ValueError(f"`eps` must be a float in [0, 1); got {eps!r}.")


def weighted_rows(grads: Tensor, weights: Tensor) -> Tensor:
    r"""Step 1 of every method: the rows :math:`d_i = w_i g_i` of the weighted gradient matrix."""
    if grads.dim() != 2 or weights.shape != (grads.shape[0],):
        raise ValueError(
            f"`grads` has shape {tuple(grads.shape)} and `weights` {tuple(weights.shape)}; "
            "expected (K, P) and (K,)."
        )
    return weights.detach().to(grads.dtype).unsqueeze(1) * grads.detach()


def _usable(norms: Tensor, eps: float) -> Tensor:
    """Rows with a direction: norm above ``eps`` times the largest and above the smallest normal
    float (the inverse of a subnormal norm overflows)."""
    return norms > torch.clamp(eps * norms.max(), min=torch.finfo(norms.dtype).tiny)


def _inverse_norms(rows: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Row norms, and their inverses with 0 for the rows that are not :func:`_usable`."""
    norms = torch.linalg.vector_norm(rows, dim=1)
    usable = _usable(norms, eps)
    safe = torch.where(usable, norms, torch.ones_like(norms))
    return norms, torch.where(usable, 1.0 / safe, torch.zeros_like(norms))


def normalize_rows(rows: Tensor, eps: float = 0.0) -> Tensor:
    r"""Unit-norm rows :math:`d_i / \|d_i\|`. Zero rows stay 0 (a term with zero gradient has no
    direction to promote to a unit vector), as do rows with :math:`\|d_i\| \le \varepsilon
    \max_j \|d_j\|` or with a subnormal norm. The default :math:`\varepsilon = 0` keeps every
    nonzero row however small relative to the others: rescuing such a term is the point of GTN,
    and float64 keeps its direction at any normal scale."""
    # One K x P multiply by per-row factors: a masked divide over the matrix is several times
    # slower at P ~ 1e5.
    return rows * _inverse_norms(rows, eps)[1].unsqueeze(1)


def gradient_task_normalization(rows: Tensor, eps: float = 0.0) -> Tensor:
    r"""Step 2 of :class:`PCGrad` (GTN): :math:`d_i \leftarrow s\, d_i / \|d_i\|` with the one
    common scale :math:`s = \frac{1}{K} \sum_j \|d_j\|`.

    Every row gets the same length, so the direction of the result no longer depends on the
    scale of any single term, while :math:`s` keeps the step length comparable to that of the
    weighted sum. Rows below the threshold of :func:`normalize_rows` become 0."""
    norms, inverse = _inverse_norms(rows, eps)
    return rows * (norms.mean() * inverse).unsqueeze(1)


def pcgrad_orders(k: int, generator: torch.Generator | None = None) -> Tensor:
    r"""Step 3a of :class:`PCGrad`: the :math:`(K, K-1)` visiting orders. Row :math:`i` is
    ``torch.randperm(K, generator=generator)`` with :math:`i` removed, drawn for
    :math:`i = 0, \dots, K-1` in turn (``K`` draws, so the result depends on the seed only)."""
    device = generator.device if generator is not None else torch.device("cpu")
    orders = []
    for i in range(k):
        perm = torch.randperm(k, generator=generator, device=device)
        orders.append(perm[perm != i])
    return torch.stack(orders) if orders else torch.zeros(0, 0, dtype=torch.long)


def _pcgrad_coefficients(rows: Tensor, orders: Tensor, eps: float) -> Tensor:
    r"""The :math:`K \times K` matrix :math:`C` with projected rows :math:`p = C D`.

    Each :math:`p_i` stays a linear combination of the original rows, so the sequential
    projections run on :math:`K \times K` coefficients and the Gramian :math:`D D^\top`: the
    :math:`P`-dimensional work is one Gramian, whatever the number of projections."""
    k = rows.shape[0]
    gram = rows @ rows.T
    norms = torch.linalg.vector_norm(rows, dim=1)
    usable = _usable(norms, eps)  # never project onto a row without a direction
    sq_norms = gram.diagonal().clamp_min(torch.finfo(rows.dtype).tiny)
    coefficients = torch.eye(k, dtype=rows.dtype, device=rows.device)
    index = torch.arange(k, device=rows.device)
    orders = orders.to(rows.device)
    for step in range(orders.shape[1]):
        j = orders[:, step]
        dots = (coefficients * gram[:, j].T).sum(dim=1)  # p_i . d_j for every i at once
        conflict = (dots < 0) & usable[j]
        step_coef = torch.where(conflict, dots / sq_norms[j], torch.zeros_like(dots))
        coefficients[index, j] -= step_coef
    return coefficients


def project_conflicting(rows: Tensor, orders: Tensor, eps: float = 0.0) -> Tensor:
    r"""Step 3 of :class:`PCGrad` (Yu et al. 2020, Algorithm 1): the projected rows :math:`p_i`.

    Starting from :math:`p_i = d_i`, for each :math:`j` in ``orders[i]``:

    .. math::

        \text{if } p_i \cdot d_j < 0: \quad
        p_i \leftarrow p_i - \frac{p_i \cdot d_j}{\|d_j\|^2}\, d_j,

    always against the *original* :math:`d_j`. Guaranteed property: right after visiting
    :math:`d_j`, :math:`p_i \cdot d_j \ge 0` (it is 0 after a projection); in particular the
    final :math:`p_i` has a non-negative inner product with the last :math:`d_j` of its order.
    A later projection may re-create a conflict with an earlier :math:`d_j` (as in the original
    algorithm), so for :math:`K > 2` the final :math:`p_i` is not conflict-free with every row;
    for :math:`K = 2` the sum :math:`p_1 + p_2` has a non-negative inner product with both rows.
    Rows that :func:`normalize_rows` would zero are never projected onto."""
    return _pcgrad_coefficients(rows, orders, eps) @ rows


class Surgery(ABC):
    r"""Abstract base class: combines :math:`(K, P)` gradients and :math:`(K,)` weights into a
    :math:`(P,)` update direction.

    ``needs_gradients = False`` tells the training loop that the result is the weighted sum, so
    it may skip the per-term gradients and backpropagate :math:`\sum_i w_i L_i` once."""

    needs_gradients: bool = True

    @abstractmethod
    def combine(
        self, grads: Tensor, weights: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Returns the detached :math:`(P,)` update direction. ``generator`` (seeded by the loop)
        is the only source of randomness; ``None`` falls back to torch's global generator."""

    def state_dict(self) -> dict:
        """Returns a copy of the internal state (every method here is stateless)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restores the state returned by :meth:`state_dict`."""
        if state:
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: `state` has keys {sorted(state)}; "
                "this method is stateless and expects an empty dict."
            )


class NoSurgery(Surgery):
    r"""The weighted sum :math:`\sum_i w_i g_i` (plain PINN training)."""

    needs_gradients = False

    def combine(
        self, grads: Tensor, weights: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        return weighted_rows(grads, weights).sum(dim=0)

    def __repr__(self) -> str:
        return "NoSurgery()"


class PCGrad(Surgery):
    r"""Projecting Conflicting Gradients of Yu et al. (2020), "Gradient Surgery for Multi-Task
    Learning", optionally after gradient task normalisation (GTN).

    Order of operations, each a function of this module:

    1. weight: :math:`d_i = w_i g_i` (:func:`weighted_rows`);
    2. if ``gtn``: :math:`d_i \leftarrow s\, d_i / \|d_i\|`, :math:`s = \operatorname{mean}_j
       \|d_j\|` (:func:`gradient_task_normalization`). The direction then ignores the scale of
       every term, *including the balancer's weights*: with GTN on, weights only set :math:`s`;
    3. for each :math:`i`, visit the other terms in a random order drawn from ``generator``
       (:func:`pcgrad_orders`) and remove from :math:`p_i` its component along each original
       :math:`d_j` it conflicts with (:func:`project_conflicting`);
    4. return :math:`\sum_i p_i`.

    :param gtn: apply step 2.
    :param eps: relative threshold in [0, 1): rows with norm at most ``eps`` times the largest
        are treated as zero (GTN leaves them at 0 instead of making them unit; nothing is
        projected onto them). The default 0 treats only exactly zero (or subnormal) rows so, so
        that GTN's invariance holds however large the imbalance between terms (a relative 1e-12
        would silently drop a term 1e12 times smaller than another, the very case GTN rescues).
    """

    def __init__(self, gtn: bool = True, eps: float = 0.0):
        if not isinstance(gtn, bool):
            raise ValueError(f"`gtn` must be a bool; got {gtn!r}.")
        _check_eps(eps)
        self.gtn = gtn
        self.eps = eps

    def combine(
        self, grads: Tensor, weights: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        rows = weighted_rows(grads, weights)
        if self.gtn:
            rows = gradient_task_normalization(rows, self.eps)
        orders = pcgrad_orders(rows.shape[0], generator)
        # sum_i p_i = (1^T C) D: one K x P product instead of materialising every p_i.
        return _pcgrad_coefficients(rows, orders, self.eps).sum(dim=0) @ rows

    def __repr__(self) -> str:
        return f"PCGrad(gtn={self.gtn}, eps={self.eps})"


class NNLSProjector(DualConeProjector):
    r"""Dual-cone projector for torchjd's UPGrad that needs only SciPy.

    torchjd's default ``QuadprogProjector`` requires the optional ``quadprog`` and ``qpsolvers``
    packages. For each weight vector :math:`u` this solves the same problem,
    :math:`\min_v v^\top G v` subject to :math:`v \ge u`, written as the non-negative least
    squares problem :math:`\min_{s \ge 0} \|A s + A u\|^2` in :math:`v = u + s`, where
    :math:`A^\top A = G / \operatorname{tr} G` (symmetric square root from an eigendecomposition,
    so a singular Gramian needs no regularisation) and Lawson-Hanson's active-set method
    (``scipy.optimize.nnls``) solves it to machine precision. Its optimality conditions are
    exactly dual feasibility, :math:`G v \ge 0`: the result has a non-negative inner product
    with every row."""

    def __call__(self, U: Tensor, G: Tensor) -> Tensor:
        m = G.shape[0]
        gram = G.detach().cpu().numpy().astype(np.float64)
        trace = np.trace(gram)
        if not trace > 0:  # every row is 0: any weights give the zero vector
            return U.clone()
        eigenvalues, eigenvectors = np.linalg.eigh(gram / trace)
        root = np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None] * eigenvectors.T
        flat_u = U.detach().cpu().numpy().astype(np.float64).reshape(-1, m)
        solutions = [u + nnls(root, -root @ u, maxiter=50 * m)[0] for u in flat_u]
        return torch.as_tensor(np.stack(solutions).reshape(U.shape), dtype=G.dtype, device=G.device)

    def __repr__(self) -> str:
        return "NNLSProjector()"


class UPGrad(Surgery):
    r"""Unconflicting Projection of Gradients of Quinton & Rey (2024), "Jacobian Descent for
    Multi-Objective Optimization", via ``torchjd.aggregation.UPGrad`` on the weighted rows
    :math:`d_i = w_i g_i`.

    Each :math:`d_i` is projected onto the dual cone :math:`\{x : d_j \cdot x \ge 0 \ \forall j\}`
    and the projections are summed (preference vector of ones, not torchjd's default mean: then
    UPGrad returns exactly :math:`\sum_i d_i` when no two rows conflict, the same step size as
    :class:`NoSurgery`). The result has a non-negative inner product with every row.

    The dual cone does not change when a row is rescaled, so the aggregator is applied to the
    unit rows :math:`\hat d_i` with preference vector :math:`(\|d_i\|)_i`, which gives the same
    :math:`\sum_i \pi(d_i)` from a Gramian with unit diagonal: the Gramian of rows 1e8 apart in
    scale would span 1e16 and lose the small rows' constraints to rounding. The dual-cone
    problems are solved by :class:`NNLSProjector` (no optional dependency). Like any
    Gramian-based solver, the inner products are non-negative up to about
    :math:`10^{-16} / (1 + \cos)` relative for two nearly antiparallel rows (e.g. ~1e-11 at
    :math:`1 + \cos = 10^{-8}`). Deterministic; the generator is unused."""

    def combine(
        self, grads: Tensor, weights: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        rows = weighted_rows(grads, weights)
        norms = torch.linalg.vector_norm(rows, dim=1)
        aggregator = _TorchJDUPGrad(pref_vector=norms, projector=NNLSProjector())
        return aggregator(normalize_rows(rows))

    def __repr__(self) -> str:
        return "UPGrad()"


class ConFIG(Surgery):
    r"""Conflict-Free Inverse Gradients of Liu et al. (2025), "ConFIG: Towards Conflict-free
    Training of Physics Informed Neural Networks", via ``torchjd.aggregation.ConFIG`` on the
    weighted rows :math:`d_i = w_i g_i`.

    The direction :math:`u` solves :math:`\hat d_i \cdot u = 1` for the unit rows
    :math:`\hat d_i` (pseudo-inverse), so it makes the same positive angle with every term; its
    length is :math:`\sum_i d_i \cdot \hat u`. The weights therefore change only the length,
    not the direction. Deterministic; the generator is unused."""

    def combine(
        self, grads: Tensor, weights: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        return _TorchJDConFIG()(weighted_rows(grads, weights))

    def __repr__(self) -> str:
        return "ConFIG()"
