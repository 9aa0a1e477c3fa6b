"""Inverse steady Navier-Stokes: recover the Reynolds number of the DFG cylinder flow from noisy
velocity sensors (after the cylinder-wake inverse problem of Raissi, Perdikaris & Karniadakis
2019, J. Comput. Phys. 378:686-707, in its steady form)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pinn_exp.anchors import Anchor
from pinn_exp.noise import Noise
from pinn_exp.problems.navier_stokes import NavierStokes, _positive_float
from pinn_exp.reference.mesh import HEIGHT

# Where the wake sensors go (dimensional): behind the cylinder, where the flow depends on Re most.
WAKE_BOX = ((0.25, 1.0), (0.1, 0.3))
# Sensors keep this distance from the cylinder: the mesh's quadratic arcs deviate from the circle
# by ~1e-7 (coarsest level), and a sensor outside the mesh has no reference value.
SENSOR_MARGIN = 1e-5


class NavierStokesInverse(NavierStokes):
    """:class:`NavierStokes` with unknown Re (true value ``re``; training starts from
    ``re_initial``), observed through ``n_sensors`` velocity sensors ``(u, v)`` of the
    finite-element reference at the true Re, corrupted by ``noise``. Terms: the three
    residuals, ``data`` (mean squared non-dimensional velocity error at the sensors) and the
    boundary terms.

    Sensors are uniform in the fluid, except a fraction ``wake_bias`` drawn uniformly in the
    wake box x in [0.25, 1.0], y in [0.1, 0.3]. The anchor holds ``Re / re_scale``: Adam moves
    a parameter by about its learning rate per step, so without the scale (``re_scale=1``) Re
    would move by ~1e-3 per step and need ~5e4 steps from 50 to 100. The residuals, the
    outlet condition and RAR's residual use the current estimate, never the true Re.
    """

    def __init__(
        self,
        generator: torch.Generator,
        data_dir: str | Path,
        anchor: Callable[..., Anchor],
        noise: Noise,
        re_initial: float = 50.0,
        re_scale: float = 100.0,
        n_sensors: int = 300,
        wake_bias: float = 0.0,
        **kwargs,
    ):
        super().__init__(generator, data_dir, **kwargs)
        re_initial = _positive_float("re_initial", re_initial)
        self.re_scale = _positive_float("re_scale", re_scale)
        if isinstance(n_sensors, bool) or not isinstance(n_sensors, int) or n_sensors < 2:
            raise ValueError(f"pde.n_sensors must be an integer >= 2, got {n_sensors!r}")
        ok = isinstance(wake_bias, int | float) and not isinstance(wake_bias, bool)
        if not (ok and 0 <= wake_bias <= 1):
            raise ValueError(f"pde.wake_bias must be a number in [0, 1], got {wake_bias!r}")
        self.true_unknowns = {"re": self.re}
        self.unknowns["re"] = anchor(initial=re_initial / self.re_scale)
        self.unknowns.to(device=self.device, dtype=self.dtype)

        # Sensors, their clean values (the reference at the true Re) and the noise: all drawn
        # once from the run's generator, so every step sees the same data.
        n_wake = int(round(wake_bias * n_sensors))
        (x0, x1), y_range = WAKE_BOX
        points = [
            self._fluid_points(
                n_sensors - n_wake, generator, (0.0, self.length), (0.0, HEIGHT), SENSOR_MARGIN
            ),
            self._fluid_points(
                n_wake, generator, (x0, min(x1, self.length)), y_range, SENSOR_MARGIN
            ),
        ]
        self.x_data = torch.cat(points)
        clean = self.reference.evaluate(self.x_data.cpu().numpy())[:, :2]
        self.uv_clean = torch.as_tensor(clean, dtype=self.dtype)
        self.uv_noisy = noise(self.uv_clean, generator)
        # The loss compares non-dimensional velocities, like the network's outputs.
        self.uv_data = (self.uv_noisy / self.u_mean).to(self.device)

    def current_re(self) -> Tensor:
        return self.re_scale * self.unknowns["re"].value()

    def inv_re(self) -> Tensor:
        return 1.0 / self.current_re()

    def unknown_values(self) -> dict[str, float]:
        return {"re": float(self.current_re().detach())}

    def losses(self, model: nn.Module, x: Tensor) -> dict[str, Tensor]:
        r = self.residual_components(model, x)
        terms = {name: (r[:, i] ** 2).mean() for i, name in enumerate(self.residual_terms)}
        uv = self.outputs_and_derivatives(model, self.x_data, order=0)[0][:, :2]
        terms["data"] = ((uv - self.uv_data) ** 2).sum(1).mean()
        return terms | self.boundary_losses(model)

    def artifacts(self) -> dict[str, np.ndarray]:
        """Sensor positions and clean and noisy ``(u, v)``, dimensional."""
        return {
            "sensors/points": self.x_data.cpu().numpy(),
            "sensors/clean": self.uv_clean.numpy(),
            "sensors/noisy": self.uv_noisy.numpy(),
        }

    def to(self, device: torch.device) -> NavierStokesInverse:
        super().to(device)
        self.x_data, self.uv_data = self.x_data.to(self.device), self.uv_data.to(self.device)
        return self
