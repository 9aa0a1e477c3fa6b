"""Measurement noise added to clean sensor data of inverse problems.

The convention follows Raissi, Perdikaris & Karniadakis, "Physics-informed neural networks: A
deep learning framework for solving forward and inverse problems involving nonlinear partial
differential equations", J. Comput. Phys. 378 (2019) 686-707: the noise of each measured
component is zero-mean Gaussian with a standard deviation equal to a fraction ("level") of that
component's standard deviation over the sensors.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod

import torch
from torch import Tensor

__all__ = ["GaussianNoise", "NoNoise", "Noise"]


def _check_clean(clean: Tensor) -> None:
    if not isinstance(clean, Tensor) or clean.ndim != 2:
        shape = tuple(clean.shape) if isinstance(clean, Tensor) else type(clean).__name__
        raise ValueError(f"clean must be a tensor of shape (n_sensors, n_components), got {shape}")


class Noise(ABC):
    """Maps clean sensor values ``(n, c)`` to noisy ones ``(n, c)``."""

    @abstractmethod
    def __call__(self, clean: Tensor, generator: torch.Generator) -> Tensor:
        """Noisy copy of ``clean``; all randomness comes from ``generator``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class NoNoise(Noise):
    """Clean data: returns a copy of its input (the generator is not used)."""

    def __call__(self, clean: Tensor, generator: torch.Generator) -> Tensor:
        _check_clean(clean)
        return clean.clone()


class GaussianNoise(Noise):
    """Relative additive Gaussian noise, per component.

    .. math:: \\tilde u_{ij} = u_{ij} + \\text{level} \\cdot \\sigma_j \\, \\xi_{ij},
       \\qquad \\xi_{ij} \\sim \\mathcal N(0, 1),

    where ``sigma_j`` is the (unbiased) standard deviation of column ``j`` of ``clean`` over
    the sensors (Raissi et al. 2019, J. Comput. Phys. 378:686-707).  ``level = 0.1`` is 10 %
    noise.  A constant column has ``sigma_j = 0`` and stays clean.
    """

    def __init__(self, level: float) -> None:
        if (
            isinstance(level, bool)
            or not isinstance(level, numbers.Real)
            or not math.isfinite(level)
            or level < 0
        ):
            raise ValueError(f"level must be a finite real number >= 0, got {level!r}")
        self.level = float(level)

    def __call__(self, clean: Tensor, generator: torch.Generator) -> Tensor:
        _check_clean(clean)
        if self.level == 0:
            return clean.clone()
        if clean.shape[0] < 2:
            raise ValueError(
                f"clean must have at least 2 sensors (rows) to define a per-component std, "
                f"got shape {tuple(clean.shape)}"
            )
        sigma = clean.std(dim=0, keepdim=True)
        # Drawn where the generator lives (a CPU generator cannot fill a CUDA tensor), so the
        # noise is the same on every device.
        xi = torch.randn(
            clean.shape, generator=generator, dtype=clean.dtype, device=generator.device
        )
        xi = xi.to(clean.device)
        return clean + self.level * sigma * xi

    def __repr__(self) -> str:
        return f"{type(self).__name__}(level={self.level!r})"
