"""The DFG channel as the Navier-Stokes PINN sees it: its points, boundary data and terms.

The fluid is the channel [0, L] x [0, H] minus the cylinder of the DFG benchmark (Schaefer &
Turek 1996, "Benchmark computations of laminar flow around a cylinder", Notes Numer. Fluid
Mech. 52:547-566), in dimensional ``(x, y)``; the diameter D is the length scale of Re and of
the non-dimensional variables (``x* = x / D``, ``u* = u / U_mean``, ``p* = p / (rho
U_mean^2)``). Here are the uniform fluid points (by rejection), the four fixed boundary point
sets, their non-dimensional targets (the parabolic inflow, no slip, the do-nothing outlet and,
for a stream-function network, psi* on inlet and walls), the velocity of a stream function
(``u* = dpsi*/dy*``, ``v* = -dpsi*/dx*``) and the boundary loss terms of
:class:`~pinn_exp.problems.navier_stokes.NavierStokes`. Exact (hard) boundary conditions are
:mod:`pinn_exp.problems.cylinder_constraints`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS, DIAMETER, HEIGHT

__all__ = [
    "BoundaryData",
    "boundary_points",
    "boundary_terms",
    "fluid_points",
    "stream_targets",
    "velocity_from_stream",
    "velocity_targets",
]

BoundaryData = Callable[[Tensor], Tensor]  # non-dimensional points (n, 2) -> values (n, 2)


def fluid_points(
    n: int,
    generator: torch.Generator,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    dtype: torch.dtype,
    margin: float = 0.0,
) -> Tensor:
    """n uniform points in a box, minus the closed cylinder (grown by ``margin``), by
    rejection: every draw comes from ``generator``. On the CPU."""
    lo = torch.tensor([x_range[0], y_range[0]], dtype=dtype)
    span = torch.tensor([x_range[1] - x_range[0], y_range[1] - y_range[0]], dtype=dtype)
    centre = torch.tensor(CYLINDER_CENTER, dtype=dtype)
    kept, count = [torch.empty(0, 2, dtype=dtype)], 0
    while count < n:
        # ~1 % of the channel is cylinder: one batch with a small surplus nearly always
        # suffices.
        pts = lo + span * torch.rand(n + n // 8 + 16, 2, generator=generator, dtype=dtype)
        pts = pts[(pts - centre).norm(dim=1) > CYLINDER_RADIUS + margin]
        kept.append(pts)
        count += len(pts)
    return torch.cat(kept)[:n]


def boundary_points(
    generator: torch.Generator,
    length: float,
    n_inlet: int,
    n_wall: int,
    n_cylinder: int,
    n_outlet: int,
    dtype: torch.dtype,
) -> dict[str, Tensor]:
    """The fixed boundary point sets (dimensional, on the CPU), drawn from ``generator``:
    ``inlet`` (x = 0), ``walls`` (half on y = 0, half on y = H), ``cylinder``, ``outlet``
    (x = L)."""

    def uniform(n: int) -> Tensor:
        return torch.rand(n, generator=generator, dtype=dtype)

    y_in, y_out = HEIGHT * uniform(n_inlet), HEIGHT * uniform(n_outlet)
    x_wall = length * uniform(n_wall)
    bottom = torch.zeros(n_wall // 2, dtype=dtype)
    y_wall = torch.cat([bottom, torch.full((n_wall - n_wall // 2,), HEIGHT, dtype=dtype)])
    theta = 2 * math.pi * uniform(n_cylinder)
    cx, cy = CYLINDER_CENTER
    return {
        "inlet": torch.stack([torch.zeros_like(y_in), y_in], 1),
        "walls": torch.stack([x_wall, y_wall], 1),
        "cylinder": torch.stack(
            [cx + CYLINDER_RADIUS * torch.cos(theta), cy + CYLINDER_RADIUS * torch.sin(theta)],
            1,
        ),
        "outlet": torch.stack([torch.full_like(y_out, length), y_out], 1),
    }


def velocity_targets(
    boundary: dict[str, Tensor],
    size_nd: tuple[float, float],
    dirichlet_velocity: BoundaryData | None,
    outlet_data: BoundaryData | None,
    dtype: torch.dtype,
    device: torch.device,
) -> dict[str, Tensor]:
    """Non-dimensional targets on the ``boundary`` sets (channel size ``size_nd`` in units of
    D): ``(u*, v*)`` on inlet (``u* = 6 s (1 - s)``, ``s = y / H``, ``v* = 0``), walls and
    cylinder (no slip), or ``dirichlet_velocity`` there; ``(u*_x / Re - p*, v*_x)`` at the
    outlet, zero (do nothing) or ``outlet_data``."""
    targets = {}
    for name in ("inlet", "walls", "cylinder"):
        pts = boundary[name] / DIAMETER
        if dirichlet_velocity is not None:
            target = dirichlet_velocity(pts)
        elif name == "inlet":
            s = pts[:, 1] / size_nd[1]
            target = torch.stack([6 * s * (1 - s), torch.zeros_like(s)], 1)
        else:
            target = torch.zeros_like(pts)
        targets[name] = target.to(dtype=dtype, device=device)
    pts = boundary["outlet"] / DIAMETER
    target = torch.zeros_like(pts) if outlet_data is None else outlet_data(pts)
    targets["outlet"] = target.to(dtype=dtype, device=device)
    return targets


def stream_targets(
    boundary: dict[str, Tensor],
    size_nd: tuple[float, float],
    stream_data: Callable[[Tensor], Tensor] | None,
    dtype: torch.dtype,
    device: torch.device,
) -> dict[str, Tensor]:
    """psi* on the inlet and the walls: the integral of the inflow profile, ``H* s^2 (3 - 2 s)``,
    so 0 on the bottom wall and the flux H* = H / D on the top one; or ``stream_data`` there."""
    targets = {}
    for name in ("inlet", "walls"):
        pts = boundary[name] / DIAMETER
        if stream_data is not None:
            target = stream_data(pts)
        else:
            s = pts[:, 1] / size_nd[1]
            target = size_nd[1] * s * s * (3 - 2 * s)
        targets[name] = target.to(dtype=dtype, device=device)
    return targets


def velocity_from_stream(d: dict, order: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Velocity-space outputs from the partials of ``(psi, p)`` up to ``order + 1``."""

    # u = psi_y, v = -psi_x: each velocity derivative is psi's with one more y or x.
    def uvp(index: tuple) -> Tensor:
        u = d[tuple(sorted((*index, 1)))][:, 0]
        v = -d[tuple(sorted((*index, 0)))][:, 0]
        return torch.stack([u, v, d[index][:, 1]], 1)

    y = uvp(())
    if order == 0:
        return y, None, None
    dy = torch.stack([uvp((0,)), uvp((1,))], 1)
    if order == 1:
        return y, dy, None
    return y, dy, torch.stack([uvp((0, 0)), uvp((1, 1))], 1)


def boundary_terms(
    at: dict[str, list],
    targets: dict[str, Tensor],
    psi_targets: dict[str, Tensor],
    inv_re: Callable[[], Tensor | float],
) -> dict[str, Tensor]:
    """Inlet, wall and cylinder velocity (and stream) errors and the do-nothing outlet
    residual, from ``at[name] = [y, dy, None, psi]`` on each set present, against the
    :func:`velocity_targets` ``targets`` and the :func:`stream_targets` ``psi_targets``;
    ``inv_re`` gives 1/Re (an inverse problem's current estimate)."""
    terms = {}
    for name in ("inlet", "walls", "cylinder"):
        if name not in at:
            continue
        y, psi = at[name][0], at[name][3]
        error = ((y[:, :2] - targets[name]) ** 2).sum(1)
        if psi is not None and name in psi_targets:
            error = error + (psi - psi_targets[name]) ** 2
        terms[name] = error.mean()
    y, dy = at["outlet"][:2]
    traction = torch.stack([inv_re() * dy[:, 0, 0] - y[:, 2], dy[:, 0, 1]], 1)
    terms["outlet"] = ((traction - targets["outlet"]) ** 2).sum(1).mean()
    return terms
