"""Drag and lift coefficients of a flow past the DFG cylinder, by a surface integral.

The DFG benchmark (M. Schaefer and S. Turek, "Benchmark computations of laminar flow around a
cylinder", Notes on Numerical Fluid Mechanics 52, Vieweg, 1996, pp. 547-566) defines, with
density rho, mean inflow speed U_mean and diameter D,

    cD = 2 F_D / (rho U_mean^2 D),    cL = 2 F_L / (rho U_mean^2 D),

where ``F = (F_D, F_L)`` is the force per unit depth of the fluid on the cylinder S,

    F = int_S sigma n ds,    sigma = -p I + rho nu (grad u + grad u^T),

with ``n`` the unit normal pointing out of the cylinder into the fluid (for ``p = x`` this
gives ``F_x = -|disk|``: pressure rising downstream pushes the body upstream). Here the integral
is evaluated in the non-dimensional variables of :mod:`pinn_exp.problems.navier_stokes` by the
trapezoid rule in the polar angle, which is spectrally accurate for a smooth periodic integrand.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS, DIAMETER
from pinn_exp.reference.navier_stokes import DP_POINTS

__all__ = ["DP_POINTS", "cylinder_quadrature", "force_coefficients", "pressure_difference"]


def cylinder_quadrature(
    n: int, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Trapezoid rule on the cylinder surface with ``n`` nodes at ``theta_k = 2 pi k / n``.

    Returns the DIMENSIONAL points (n, 2) (as ``outputs_and_derivatives`` takes them), the unit
    normals (n, 2) pointing out of the cylinder into the fluid, and the weights (n,) in
    non-dimensional arc length (lengths in units of D: radius 1/2, each weight ``pi / n``).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 8:
        raise ValueError(f"n must be an integer >= 8, got {n!r}")
    theta = torch.arange(int(n), dtype=dtype, device=device) * (2 * math.pi / int(n))
    normals = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    points = torch.tensor(CYLINDER_CENTER, dtype=dtype, device=device) + CYLINDER_RADIUS * normals
    weights = torch.full_like(theta, 2 * math.pi * (CYLINDER_RADIUS / DIAMETER) / int(n))
    return points, normals, weights


def force_coefficients(
    y: Tensor, dy: Tensor, normals: Tensor, weights: Tensor, inv_re: Tensor | float
) -> tuple[Tensor, Tensor]:
    """DFG drag and lift coefficients ``(cD, cL)`` (0-d tensors) of the non-dimensional flow.

    ``y`` (n, 3) is ``(u*, v*, p*)`` and ``dy`` (n, 2, 3) its derivatives, ``dy[:, k] =
    d(u*, v*, p*)/dx*_k``, at the quadrature points; ``normals`` (n, 2) point into the fluid and
    ``weights`` (n,) are in non-dimensional arc length (see :func:`cylinder_quadrature`).
    ``inv_re`` may be a 0-d tensor (an inverse problem's estimate); gradients flow to it and to
    ``y`` and ``dy``. The force ``F* = sum_k w_k sigma*(x_k) n_k`` uses the non-dimensional
    stress ``sigma* = -p* I + (grad u* + grad u*^T) / Re``.

    Why ``cD = 2 F*_x`` with no other factor: with ``p = rho U_mean^2 p*``, ``grad u = (U_mean /
    D) grad* u*`` and ``rho nu = rho U_mean D / Re``, the stress is ``sigma = rho U_mean^2
    sigma*``; with ``ds = D ds*``, ``F = rho U_mean^2 D F*``, which is exactly the denominator
    of the DFG coefficients.
    """
    n = y.shape[0]
    shapes = {"y": (y, (n, 3)), "dy": (dy, (n, 2, 3)), "normals": (normals, (n, 2))}
    for name, (value, shape) in (shapes | {"weights": (weights, (n,))}).items():
        if tuple(value.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    grad_u = dy[:, :, :2].transpose(1, 2)  # grad_u[:, i, j] = du_i / dx*_j
    strain = grad_u + grad_u.transpose(1, 2)
    viscous = torch.einsum("nij,nj->ni", strain, normals)
    traction = -y[:, 2:3] * normals + inv_re * viscous
    force = (weights.unsqueeze(1) * traction).sum(0)
    return 2 * force[0], 2 * force[1]


def pressure_difference(p_front: Tensor, p_rear: Tensor, u_mean: float) -> Tensor:
    """DFG pressure difference ``p(0.15, 0.2) - p(0.25, 0.2)`` (rho = 1, dimensional) from the
    non-dimensional pressures ``p*`` at :data:`DP_POINTS`: ``U_mean^2 (p*_front - p*_rear)``."""
    return u_mean**2 * (p_front - p_rear)
