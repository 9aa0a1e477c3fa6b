"""Exact inlet, wall and cylinder conditions for a stream-function PINN of the DFG channel.

The network's stream output ``N`` becomes ``psi = g + phi^2 N`` (Sukumar & Srivastava 2022,
"Exact imposition of boundary conditions with distance functions in physics-informed deep
neural networks", CMAME 389:114333; Lu et al. 2021, "Physics-informed neural networks with hard
constraints for inverse design", SIAM J. Sci. Comput. 43:B1105-B1132). ``phi`` vanishes on the
inlet, both walls and the cylinder, so ``psi = g`` there; ``phi^2`` (not ``phi``) also makes
``grad psi = grad g`` there, so the velocity ``(psi_y, -psi_x)`` equals ``g``'s: the parabolic
inflow at the inlet and no slip on the walls and the cylinder, to rounding, for any weights.

In non-dimensional coordinates ``(X, Y) = (x, y) / D`` (channel height ``H``, cylinder radius
``R`` around ``C``):

- ``g = (1 - b) psi_in(Y) + b c``: ``psi_in = H s^2 (3 - 2 s)``, ``s = Y / H``, integrates the
  inflow ``6 s (1 - s)`` (so it is 0 on the bottom wall, ``H`` on the top one, and its
  derivative vanishes on both); ``b(r)`` is 1 with three vanishing derivatives on the cylinder
  and 0 beyond ``r = blend_radius``, so ``g = c`` and ``grad g = 0`` on the cylinder. The
  cylinder's stream value ``c`` (the flux passing below it) is not known in advance: it is
  ``psi_in(C_Y)`` plus the network's stream output at the cylinder's centre, a point outside
  the fluid, so training chooses it.
- ``phi = tanh(X / inlet_length) * 4 s (1 - s) * (r^2 - R^2) / (r^2 + R^2)``: each factor is a
  distance-like function of one boundary, O(1) away from it, so the network's output stays O(1)
  (a plain ``X / L`` factor would make ``phi^2`` ~ 1e-3 a diameter behind the inlet).

:func:`constraint_partials` gives the partials of ``g``'s two parts and of ``phi^2`` by nested
autograd (they involve no network parameter, and the collocation points change only at
resampling, so they are cached); :func:`compose` applies Leibniz's rule.
"""

from __future__ import annotations

from math import comb

import torch
from torch import Tensor

from pinn_exp.jets import MultiIndex, activation3, chain_rule, multi_indices

_BLEND = (35.0, -84.0, 70.0, -20.0)  # 1 - b(t) = 35 t^4 - 84 t^5 + 70 t^6 - 20 t^7: C^3 at t = 0, 1


class StreamConstraint:
    """``psi = g + phi^2 N`` for a channel of non-dimensional height ``height`` with a cylinder of
    radius ``radius`` at ``centre`` (non-dimensional). See the module docstring."""

    def __init__(
        self,
        height: float,
        centre: tuple[float, float],
        radius: float,
        blend_radius: float,
        inlet_length: float = 2.0,
    ):
        if not radius < blend_radius < min(centre[0], centre[1], height - centre[1]):
            raise ValueError(
                f"blend_radius must lie between the cylinder's radius {radius:g} and its distance"
                f" to the inlet and walls, got {blend_radius!r}"
            )
        self.height, self.centre, self.radius = height, centre, radius
        self.blend_radius, self.inlet_length = blend_radius, inlet_length
        self._cache: dict[tuple, tuple[Tensor, dict]] = {}

    def inflow_stream(self, y: Tensor | float) -> Tensor | float:
        s = y / self.height
        return self.height * s * s * (3 - 2 * s)

    def fields(self, xy: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(1 - b) psi_in``, ``b`` and ``phi^2`` at non-dimensional points (n,)."""
        x, y = xy[:, 0], xy[:, 1]
        r2 = (x - self.centre[0]) ** 2 + (y - self.centre[1]) ** 2
        t = ((r2.sqrt() - self.radius) / (self.blend_radius - self.radius)).clamp(0.0, 1.0)
        rise = t**4 * (_BLEND[0] + t * (_BLEND[1] + t * (_BLEND[2] + t * _BLEND[3])))
        b = 1 - rise
        s = y / self.height
        phi = torch.tanh(x / self.inlet_length) * 4 * s * (1 - s)
        phi = phi * (r2 - self.radius**2) / (r2 + self.radius**2)
        return rise * self.inflow_stream(y), b, phi * phi

    def partials(self, xy: Tensor, order: int) -> dict[MultiIndex, Tensor]:
        """``{index: (n, 3)}``: partials up to ``order`` of ``(1 - b) psi_in``, ``b`` and
        ``phi^2`` at non-dimensional points ``xy`` (n, 2), cached for the last point sets.

        Computed as truncated Taylor "jets" (each factor's partials, combined by Leibniz's rule
        and Faa di Bruno's formula): nested autograd took ~1 s for 4096 points at third order,
        about 15x the network's own residual there, and RAR ranks 10x the collocation points at
        every resampling."""
        key = (tuple(xy.shape), order, xy.dtype, xy.device)
        hit = self._cache.get(key)
        if hit is not None and torch.equal(hit[0], xy):
            return hit[1]
        indices = multi_indices(2, order)
        x, y = xy[:, 0].detach(), xy[:, 1].detach()
        one, zero = torch.ones_like(x), torch.zeros_like(x)

        def coordinate(v: Tensor, axis: int, scale: float = 1.0) -> dict:
            unit = {(axis,): one / scale}
            return {i: v / scale if i == () else unit.get(i, zero) for i in indices}

        dx, dy = x - self.centre[0], y - self.centre[1]
        r2 = {i: zero for i in indices} | {(): dx * dx + dy * dy, (0,): 2 * dx, (1,): 2 * dy}
        r2 |= {i: 2 * one for i in ((0, 0), (1, 1)) if i in r2}
        # r = sqrt(r2), then the blend's rise over t = (r - R) / (R_b - R), clamped to [0, 1]:
        # at t = 1 its first three derivatives vanish, so the clamp is smooth to third order.
        u = r2[()]
        r = _apply(r2, (u.sqrt(), 0.5 * u**-0.5, -0.25 * u**-1.5, 0.375 * u**-2.5), indices)
        width = self.blend_radius - self.radius
        t = {i: (v - self.radius if i == () else v) / width for i, v in r.items()}
        rise = _apply(t, _rise(t[()].clamp(0.0, 1.0)), indices)
        h = self.height
        s = y / h
        inflow = (h * s * s * (3 - 2 * s), 6 * s * (1 - s), (6 - 12 * s) / h, -12 / h**2 * one)
        inflow = _apply(coordinate(y, 1), inflow, indices)
        inlet_z = coordinate(x, 0, self.inlet_length)
        inlet = _apply(inlet_z, activation3(inlet_z[()], "tanh"), indices)
        walls = (4 * s * (1 - s), 4 * (1 - 2 * s) / h, -8 / h**2 * one, zero)
        walls = _apply(coordinate(y, 1), walls, indices)
        q, c = u + self.radius**2, 2 * self.radius**2
        cylinder = _apply(r2, (1 - c / q, c / q**2, -2 * c / q**3, 6 * c / q**4), indices)
        phi = _mul(_mul(inlet, walls, indices), cylinder, indices)
        a, w = _mul(rise, inflow, indices), _mul(phi, phi, indices)
        b = {i: (1 - v if i == () else -v) for i, v in rise.items()}
        out = {i: torch.stack([a[i], b[i], w[i]], 1) for i in indices}
        if len(self._cache) >= 8:  # collocation, boundary and sensor sets, and a few spares
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = (xy.detach().clone(), out)
        return out


def _rise(t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``1 - b = 35 t^4 - 84 t^5 + 70 t^6 - 20 t^7`` and its first three derivatives."""
    c4, c5, c6, c7 = _BLEND
    return (
        t**4 * (c4 + t * (c5 + t * (c6 + t * c7))),
        t**3 * (4 * c4 + t * (5 * c5 + t * (6 * c6 + t * 7 * c7))),
        t**2 * (12 * c4 + t * (20 * c5 + t * (30 * c6 + t * 42 * c7))),
        t * (24 * c4 + t * (60 * c5 + t * (120 * c6 + t * 210 * c7))),
    )


def _apply(z: dict, sigma: tuple, indices: list[MultiIndex]) -> dict:
    """The jet of f(z) from z's jet and f and its first three derivatives at z's value."""
    return {i: sigma[0] if i == () else chain_rule(z, sigma, i) for i in indices}


def _mul(a: dict, b: dict, indices: list[MultiIndex]) -> dict:
    """The jet of a product, by Leibniz's rule."""
    out = {}
    for index in indices:
        na, nb = _counts(index)
        out[index] = sum(
            comb(na, i) * comb(nb, j) * a[_index(i, j)] * b[_index(na - i, nb - j)]
            for i in range(na + 1)
            for j in range(nb + 1)
        )
    return out


def _counts(index: MultiIndex) -> tuple[int, int]:
    return index.count(0), index.count(1)


def _index(a: int, b: int) -> MultiIndex:
    return (0,) * a + (1,) * b


def compose(
    geometry: dict[MultiIndex, Tensor], network: dict[MultiIndex, Tensor], c: Tensor
) -> dict[MultiIndex, Tensor]:
    """Partials of ``psi = A + b c + W N`` from those of ``A, b, W`` (``geometry``, columns 0-2)
    and of the network's stream output ``N`` (``network[index][:, 0]``), by Leibniz's rule
    ``d^(a,b) (W N) = sum_(i<=a, j<=b) C(a,i) C(b,j) d^(i,j) W d^(a-i,b-j) N``; the other
    network outputs (pressure) pass through. ``c`` is the cylinder's stream value (0-d)."""
    out = {}
    for index, n_part in network.items():
        a, b = _counts(index)
        psi = geometry[index][:, 0] + c * geometry[index][:, 1]
        for i in range(a + 1):
            for j in range(b + 1):
                w = geometry[_index(i, j)][:, 2]
                psi = psi + comb(a, i) * comb(b, j) * w * network[_index(a - i, b - j)][:, 0]
        out[index] = torch.cat([psi.unsqueeze(1), n_part[:, 1:]], 1)
    return out
