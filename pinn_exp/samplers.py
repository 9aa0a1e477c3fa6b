"""Collocation-point samplers: where the PDE residual loss is evaluated.

A sampler owns the current set of ``n_points`` collocation points and, every ``interval``
training steps, replaces it.  Two strategies are provided:

* :class:`UniformSampler` -- fresh i.i.d. uniform points (the "random resampling" baseline of
  Wu et al. 2023).
* :class:`RARSampler` -- residual-based adaptive refinement, either the residual-proportional
  distribution of Wu et al. 2023 (``mode="rar_d"``) or the greedy largest-residual rule of
  Lu et al. 2021 (``mode="greedy"``).

Either can be given ``focus``: regions (balls or boxes) that receive fixed fractions of every
fresh draw, e.g. around a cylinder and in its wake (see :class:`Sampler`).

References
----------
C. Wu, M. Zhu, Q. Tan, Y. Kartha, L. Lu, "A comprehensive study of non-adaptive and
residual-based adaptive sampling for physics-informed neural networks", Computer Methods in
Applied Mechanics and Engineering 403 (2023) 115671.

L. Lu, X. Meng, Z. Mao, G. E. Karniadakis, "DeepXDE: A deep learning library for solving
differential equations", SIAM Review 63(1) (2021) 208-228.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor

from pinn_exp.regions import check_regions, draw_focused, plain_regions

__all__ = ["Domain", "RARSampler", "Residual", "Sampler", "UniformSampler"]

Domain = Callable[[int, torch.Generator], Tensor]
"""Draws ``n`` i.i.d. uniform points in the problem's domain, shape ``(n, d)``, floating point
(float64 in this project; float32 runs are allowed), on any device."""

Residual = Callable[[Tensor], Tensor]
"""Pointwise PDE residual magnitude ``|r(x)|`` of ``x`` of shape ``(n, d)``, shape ``(n,)``."""


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_float(name: str, value: object, low: float, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number in [{low}, {high}], got {value!r}")
    value = float(value)
    # "not (low <= value <= high)" also rejects NaN.
    if not (low <= value <= high) or math.isnan(value):
        raise ValueError(f"{name} must be a real number in [{low}, {high}], got {value!r}")
    return value


# -- focus regions (shared with pde.sensor_focus: pinn_exp.regions) --------------------------

_FOCUS = "sampler.focus"


class Sampler(ABC):
    """Owns the collocation points and decides when and how to replace them.

    Parameters
    ----------
    domain:
        ``domain(n, generator)`` draws ``n`` uniform points of the problem's domain, ``(n, d)``.
    generator:
        The only source of randomness; a resumed run also restores its state
        (see :meth:`state_dict`).
    n_points:
        Number of collocation points; every update keeps exactly this many.
    interval:
        The points are replaced at every step ``> 0`` that is a multiple of ``interval``.
    focus:
        ``None`` (uniform draws), or a list of regions, each a mapping with ``fraction`` in
        ``(0, 1]`` (the fractions sum to ``<= 1``) and either ``centre`` + ``radius`` (the
        closed ball ``|x - centre| <= radius``) or ``low`` + ``high`` (the closed box
        ``low <= x <= high``), in the problem's own point coordinates (Navier-Stokes:
        dimensional ``(x, y)``; Allen-Cahn: ``(t, x)``).  Every fresh draw of ``n`` points
        (:meth:`_draw`) then holds ``round(fraction * n)`` points uniform in ``Omega`` intersected
        with each region, and the rest uniform in ``Omega``, shuffled together:

        .. math:: q = (1 - \\sum_i f_i) \\, U_\\Omega + \\sum_i f_i \\, U_{\\Omega \\cap R_i}

        (overlapping regions add up; where rounding up would overshoot ``n``, the last regions
        give one point back).  Region points are found by rejection from
        ``domain(m, generator)``, so they never leave the domain (e.g. never inside the
        cylinder); a region that keeps fewer than ~0.1 % of the domain's draws raises.  With
        ``focus=None`` the points are exactly ``domain(n, generator)``, as before the option.
    """

    def __init__(
        self,
        domain: Domain,
        generator: torch.Generator,
        n_points: int,
        interval: int,
        focus: Sequence[Mapping] | None = None,
    ) -> None:
        if not callable(domain):
            raise ValueError(f"domain must be callable (n, generator) -> (n, d), got {domain!r}")
        if not isinstance(generator, torch.Generator):
            raise ValueError(f"generator must be a torch.Generator, got {generator!r}")
        self.domain = domain
        self.generator = generator
        self.n_points = _check_int("n_points", n_points, 1)
        self.interval = _check_int("interval", interval, 1)
        self.focus = check_regions(focus, _FOCUS)
        self._like: Tensor | None = None  # empty tensor: d, dtype and device of the points
        self._points = self._draw(self.n_points)

    # -- public interface -------------------------------------------------------------------

    def points(self) -> Tensor:
        """Current collocation points, ``(n_points, d)``.

        A detached alias: calling ``requires_grad_()`` on it does not touch the stored set.
        """
        return self._points.detach()

    def due(self, step: int) -> bool:
        """Whether :meth:`update` should run at training step ``step``."""
        return step > 0 and step % self.interval == 0

    @abstractmethod
    def update(self, residual: Residual) -> None:
        """Replace the collocation points; ``residual`` reflects the current network."""

    def state_dict(self) -> dict:
        """Points and generator state: a sampler loaded from it continues bit-identically.

        The generator state is included because the next update's draws depend on it; if the
        generator is shared with other components, restoring it here sets the shared stream to
        the instant this dict was taken.
        """
        return {"points": self._points.clone(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        missing = {"points", "generator"} - set(state)
        if missing:
            raise ValueError(f"state is missing keys {sorted(missing)}; got keys {sorted(state)}")
        points = state["points"]
        if not isinstance(points, Tensor) or tuple(points.shape) != tuple(self._points.shape):
            shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
            raise ValueError(
                f"state['points'] must have shape {tuple(self._points.shape)}, got {shape}"
            )
        self._points = points.detach().clone().to(self._points)
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        args = self._repr_args()
        if self.focus is not None:
            args["focus"] = plain_regions(self.focus)
        text = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return f"{type(self).__name__}({text})"

    # -- helpers for subclasses -------------------------------------------------------------

    def _repr_args(self) -> dict:
        return {"n_points": self.n_points, "interval": self.interval}

    def _draw(self, n: int) -> Tensor:
        """``n`` fresh points, uniform or, with ``focus``, the region mixture (class docstring;
        :func:`pinn_exp.regions.draw_focused`).

        Without ``focus`` this is one ``domain(n, generator)`` call: the generator is consumed
        exactly as it was before the option existed.
        """
        return draw_focused(self._checked_domain, n, self.generator, self.focus, _FOCUS)

    def _checked_domain(self, n: int, generator: torch.Generator) -> Tensor:
        """``domain(n, generator)``, checked (:meth:`_checked`) at every call."""
        return self._checked(self.domain(n, generator), n)

    def _checked(self, x: object, n: int) -> Tensor:
        """``x = domain(n, generator)`` checked for shape, dtype and finiteness."""
        if not isinstance(x, Tensor) or x.ndim != 2 or x.shape[0] != n:
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"domain({n}, generator) must return shape ({n}, d), got {shape}")
        if not x.is_floating_point():
            raise ValueError(f"domain must return floating-point points, got dtype {x.dtype}")
        if self._like is not None and (
            x.shape[1] != self._like.shape[1] or x.dtype != self._like.dtype
        ):
            raise ValueError(
                f"domain returned (d={x.shape[1]}, {x.dtype}), earlier "
                f"(d={self._like.shape[1]}, {self._like.dtype})"
            )
        if not torch.isfinite(x).all():
            raise ValueError("domain returned non-finite points")
        self._like = x[:0]
        return x.detach()


class UniformSampler(Sampler):
    """Fresh i.i.d. uniform collocation points every ``interval`` steps.

    ``x_i ~ U(Omega)``, ``i = 1..n_points``, redrawn at each update; the residual is ignored.
    This is the "random resampling" method that Wu et al. (2023, CMAME 403:115671) found to be
    a strong non-adaptive baseline.  With ``focus`` (see :class:`Sampler`) the draws follow the
    region mixture ``q`` instead of ``U(Omega)``.
    """

    def __init__(
        self,
        domain: Domain,
        generator: torch.Generator,
        n_points: int = 2000,
        interval: int = 1000,
        focus: Sequence[Mapping] | None = None,
    ) -> None:
        super().__init__(domain, generator, n_points, interval, focus)

    def update(self, residual: Residual) -> None:
        self._points = self._draw(self.n_points)


class RARSampler(Sampler):
    """Residual-based adaptive refinement at a fixed number of points.

    Every ``interval`` steps a fresh uniform candidate pool ``S`` of ``n_candidates`` points is
    drawn and ``eps(x) = |r(x)|`` is evaluated on it (in chunks of ``chunk_size`` to bound
    memory).  ``n_uniform = round(uniform_fraction * n_points)`` points of the new set are
    always fresh uniform draws so that no part of the domain is abandoned.

    ``mode="rar_d"`` (Wu et al. 2023, CMAME 403:115671): the whole set is resampled; the
    ``n_points - n_uniform`` adaptive points are drawn from ``S`` without replacement with

    .. math:: p(x) \\propto \\frac{\\varepsilon^k(x)}{\\mathbb{E}[\\varepsilon^k]} + c ,

    ``E`` being the mean over ``S``.  ``k`` sharpens the focus on large residuals, ``c``
    mixes in uniform sampling (``k = 0`` or ``c -> inf`` is uniform).  Wu et al. call this
    whole-set resampling "RAD"; their "RAR-D" adds the points to a growing set instead -- here
    the count is kept fixed, so it is the RAD rule.  Drawing without replacement keeps the set
    free of duplicates.

    ``mode="greedy"`` (Lu et al. 2021, DeepXDE, SIAM Review 63:208-228): the residual is also
    evaluated on the current points; the ``n_greedy + n_uniform`` current points of smallest
    residual are dropped and replaced by the ``n_greedy`` candidates of largest residual plus
    ``n_uniform`` fresh uniform points.  (Lu et al. grow the set; here it stays at
    ``n_points``.)

    Parameters
    ----------
    n_candidates:
        Size of the candidate pool; ``None`` means ``10 * n_points``.
    mode:
        ``"rar_d"`` or ``"greedy"``.
    k, c:
        Exponent and offset of the ``rar_d`` density, both ``>= 0``.
    uniform_fraction:
        Fraction of ``n_points`` that is fresh uniform at every update, in ``[0, 1]``.
    n_greedy:
        Points exchanged per greedy update; ``None`` means ``n_points // 10`` (at least 1).
    chunk_size:
        Points per residual call.
    focus:
        Regions given fixed fractions of every fresh draw (see :class:`Sampler`).  Every draw
        goes through it: the initial points, the candidate pool ``S`` and the ``n_uniform``
        fresh points.  So focus replaces the base density ``U(Omega)`` by the region mixture
        ``q``, and refinement acts relative to it: ``rar_d`` samples from
        ``q(x) (eps^k(x) / E_q[eps^k] + c)``, its ``c`` term and ``uniform_fraction`` mixing in
        ``q`` rather than ``U(Omega)``; ``greedy`` picks the largest residuals among
        ``q``-distributed candidates.  Regions therefore keep their share whatever the
        residual does, while the refinement can still add points anywhere in the domain.

    The residual callable receives chunks with ``requires_grad=True`` (so it may differentiate
    with respect to ``x``) and is not wrapped in ``torch.no_grad``; its output is detached and
    ``abs`` is applied, so a signed residual is accepted too.
    """

    MODES = ("rar_d", "greedy")

    def __init__(
        self,
        domain: Domain,
        generator: torch.Generator,
        n_points: int,
        interval: int,
        n_candidates: int | None = None,
        mode: str = "rar_d",
        k: float = 1.0,
        c: float = 1.0,
        uniform_fraction: float = 0.1,
        n_greedy: int | None = None,
        chunk_size: int = 4096,
        focus: Sequence[Mapping] | None = None,
    ) -> None:
        n_points = _check_int("n_points", n_points, 1)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.n_candidates = (
            None if n_candidates is None else _check_int("n_candidates", n_candidates, 1)
        )
        # The pool scales with n_points unless given, so overriding n_points alone stays valid.
        self._n_candidates = 10 * n_points if n_candidates is None else self.n_candidates
        self.k = _check_float("k", k, 0.0)
        self.c = _check_float("c", c, 0.0)
        self.uniform_fraction = _check_float("uniform_fraction", uniform_fraction, 0.0, 1.0)
        self.n_greedy = None if n_greedy is None else _check_int("n_greedy", n_greedy, 1)
        self.chunk_size = _check_int("chunk_size", chunk_size, 1)
        self.n_uniform = round(self.uniform_fraction * n_points)

        if mode == "rar_d":
            n_adaptive = n_points - self.n_uniform
            if n_adaptive > self._n_candidates:
                raise ValueError(
                    f"n_candidates must be >= the {n_adaptive} adaptive points drawn without "
                    f"replacement (n_points - round(uniform_fraction * n_points)), "
                    f"got {self.n_candidates}"
                )
        else:
            self._n_greedy = max(1, n_points // 10) if self.n_greedy is None else self.n_greedy
            if self._n_greedy > self._n_candidates:
                raise ValueError(
                    f"n_greedy must be <= n_candidates={self._n_candidates}, got {self._n_greedy}"
                )
            if self._n_greedy + self.n_uniform > n_points:
                raise ValueError(
                    f"n_greedy must be <= n_points - round(uniform_fraction * n_points) = "
                    f"{n_points - self.n_uniform}, got {self._n_greedy}"
                )
        super().__init__(domain, generator, n_points, interval, focus)

    def _repr_args(self) -> dict:
        return {
            **super()._repr_args(),
            "n_candidates": self.n_candidates,
            "mode": self.mode,
            "k": self.k,
            "c": self.c,
            "uniform_fraction": self.uniform_fraction,
            "n_greedy": self.n_greedy,
            "chunk_size": self.chunk_size,
        }

    def update(self, residual: Residual) -> None:
        if self.mode == "rar_d":
            self._points = self._update_rar_d(residual)
        else:
            self._points = self._update_greedy(residual)

    # -- modes ------------------------------------------------------------------------------

    def _update_rar_d(self, residual: Residual) -> Tensor:
        parts = []
        n_adaptive = self.n_points - self.n_uniform
        if n_adaptive > 0:
            candidates = self._draw(self._n_candidates)
            eps = self._evaluate(residual, candidates)
            top = eps.max()
            if top > 0:
                # eps^k / mean(eps^k) is scale-free; scaling by the max first avoids overflow.
                eps_k = (eps / top).pow(self.k)
                weights = eps_k / eps_k.mean() + self.c
            else:
                # A residual that is zero everywhere carries no information: sample uniformly.
                weights = torch.ones_like(eps)
            n_positive = int((weights > 0).sum())
            if n_positive < n_adaptive:
                # With c = 0, too few non-zero residuals for sampling without replacement: the
                # limit c -> 0+ fills the rest uniformly from the zero-residual candidates.
                weights = weights + weights.max() * 1e-12
            # Drawn where the generator lives (a CPU generator cannot drive a CUDA multinomial).
            index = torch.multinomial(
                weights.to(self.generator.device),
                n_adaptive,
                replacement=False,
                generator=self.generator,
            )
            parts.append(candidates[index.to(candidates.device)])
        if self.n_uniform > 0:
            parts.append(self._draw(self.n_uniform))
        return torch.cat(parts)

    def _update_greedy(self, residual: Residual) -> Tensor:
        candidates = self._draw(self._n_candidates)
        eps_candidates = self._evaluate(residual, candidates)
        eps_current = self._evaluate(residual, self._points)
        n_drop = self._n_greedy + self.n_uniform
        keep = torch.argsort(eps_current, descending=True)[: self.n_points - n_drop]
        best = torch.topk(eps_candidates, self._n_greedy).indices
        parts = [self._points[keep], candidates[best]]
        if self.n_uniform > 0:
            parts.append(self._draw(self.n_uniform))
        return torch.cat(parts)

    def _evaluate(self, residual: Residual, x: Tensor) -> Tensor:
        """``|r(x)|`` in chunks, checked to be a finite per-point vector."""
        out = []
        for chunk in torch.split(x, self.chunk_size):
            # A leaf that requires grad lets the residual differentiate with respect to x; the
            # graph of each chunk is freed once its output is detached.
            chunk = chunk.detach().clone().requires_grad_(True)
            r = residual(chunk)
            n = chunk.shape[0]
            if not isinstance(r, Tensor) or tuple(r.shape) != (n,):
                shape = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
                raise ValueError(
                    f"residual must return one value per point, shape ({n},), got {shape}; a "
                    f"scalar (e.g. the mean residual) would turn the refined set into copies "
                    f"of a single point"
                )
            r = r.detach()
            if not torch.isfinite(r).all():
                bad = int((~torch.isfinite(r)).sum())
                raise ValueError(f"residual returned {bad} non-finite values out of {n}")
            out.append(r.abs().to(torch.float64))
        return torch.cat(out)
