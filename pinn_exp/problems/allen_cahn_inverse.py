"""Inverse Allen-Cahn: recover the diffusion coefficient d from noisy snapshots."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pinn_exp.anchors import Anchor
from pinn_exp.noise import Noise
from pinn_exp.problems.allen_cahn import AllenCahn


class AllenCahnInverse(AllenCahn):
    """Allen-Cahn with unknown ``d`` (its true value is ``d``; training starts from
    ``d_initial``), observed through ``n_sensors`` points of the spectral reference at each of
    ``sensor_times``, corrupted by the ``noise`` module. Terms: ``pde``, ``ic``, ``data``.

    The unknown is parameterised by ``anchor`` (e.g. ``beta * softplus(k)``); the residual, the
    PDE loss and RAR's residual all use its current value, never the true one.
    """

    def __init__(
        self,
        generator: torch.Generator,
        data_dir: str | Path,
        anchor: Callable[..., Anchor],
        noise: Noise,
        d_initial: float = 1e-3,
        sensor_times: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9),
        n_sensors: int = 64,
        **kwargs,
    ):
        if not d_initial > 0:
            raise ValueError(f"pde.d_initial must be > 0, got {d_initial!r}")
        super().__init__(generator, data_dir, periodic_embedding=True, **kwargs)
        ref = self.reference
        if not (isinstance(n_sensors, int) and 0 < n_sensors <= len(ref.x)):
            raise ValueError(
                f"pde.n_sensors must be an integer in [1, {len(ref.x)}], got {n_sensors!r}"
            )
        rows = []
        for t in sensor_times:
            i = int(np.argmin(np.abs(ref.t - t)))
            if abs(ref.t[i] - t) > 1e-9:
                raise ValueError(
                    f"pde.sensor_times contains {t!r}: allowed are the reference snapshot times "
                    f"0, {ref.t[1]:g}, ..., {ref.t[-1]:g}"
                )
            rows.append(i)
        self.true_unknowns = {"d": self.d}
        self.unknowns["d"] = anchor(initial=d_initial)
        self.unknowns.to(device=self.device, dtype=self.dtype)
        # Sensors: the same random x positions at each snapshot time, drawn from the run's
        # generator; the noise is drawn once, so every step sees the same noisy data.
        cols = torch.randperm(len(ref.x), generator=generator)[:n_sensors].sort().values.numpy()
        tt, xx = np.meshgrid(ref.t[rows], ref.x[cols], indexing="ij")
        opts = dict(dtype=self.dtype, device=self.device)
        self.x_data = torch.as_tensor(np.stack([tt.ravel(), xx.ravel()], 1), **opts)
        self.u_clean = torch.as_tensor(ref.u[np.ix_(rows, cols)].reshape(-1, 1), **opts)
        self.u_data = noise(self.u_clean.cpu(), generator).to(**opts)

    def current_d(self) -> Tensor:
        return self.unknowns["d"].value()

    def losses(self, model: nn.Module, x: Tensor) -> dict[str, Tensor]:
        # pde (with the current estimate of d) and ic, then the sensor data.
        terms = super().losses(model, x)
        terms["data"] = ((self.u(model, self.x_data) - self.u_data[:, 0]) ** 2).mean()
        return terms

    def artifacts(self) -> dict[str, np.ndarray]:
        return {
            "sensors/points": self.x_data.cpu().numpy(),
            "sensors/clean": self.u_clean.cpu().numpy(),
            "sensors/noisy": self.u_data.cpu().numpy(),
        }
