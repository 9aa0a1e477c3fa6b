"""Inverse steady Navier-Stokes: recover the Reynolds number of the DFG cylinder flow from noisy
velocity sensors (after the cylinder-wake inverse problem of Raissi, Perdikaris & Karniadakis
2019, J. Comput. Phys. 378:686-707, in its steady form)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pinn_exp.anchors import Anchor
from pinn_exp.noise import Noise
from pinn_exp.problems.checks import positive_float
from pinn_exp.problems.navier_stokes import NavierStokes
from pinn_exp.reference.mesh import HEIGHT
from pinn_exp.regions import check_regions, draw_focused, plain_regions

# Where the wake sensors go (dimensional): behind the cylinder, where the flow depends on Re most.
WAKE_BOX = ((0.25, 1.0), (0.1, 0.3))
# Sensors keep this distance from the cylinder: the mesh's quadratic arcs deviate from the circle
# by ~1e-7 (coarsest level), and a sensor outside the mesh has no reference value.
SENSOR_MARGIN = 1e-5
SENSOR_FOCUS = "pde.sensor_focus"  # the key that sensor-layout errors name
DATA_WEIGHTS = ("unit", "noise")


class NavierStokesInverse(NavierStokes):
    """:class:`NavierStokes` with unknown Re (true value ``re``; training starts from
    ``re_initial``), observed through ``n_sensors`` velocity sensors ``(u, v)`` of the
    finite-element reference at the true Re, corrupted by ``noise``. Terms: the three
    residuals, ``data`` (the velocity misfit at the sensors, see ``data_weight``) and the
    boundary terms.

    Sensor layout: by default the sensors are uniform in the fluid, except a fraction
    ``wake_bias`` drawn uniformly in the wake box x in [0.25, 1.0], y in [0.1, 0.3]
    (:data:`WAKE_BOX`). ``sensor_focus`` generalises that: a list of regions in the format of
    ``sampler.focus`` (balls ``{fraction, centre, radius}`` or boxes ``{fraction, low, high}``
    in dimensional ``(x, y)``; :mod:`pinn_exp.regions`), each given ``round(fraction *
    n_sensors)`` sensors uniform in the fluid within it, the rest uniform in the fluid, all
    drawn with the sampler's code. Where the flow carries information about the viscosity
    (near the cylinder, in the wake) is where sensors pay. Every sensor keeps
    :data:`SENSOR_MARGIN` from the cylinder. ``sensor_focus`` replaces ``wake_bias`` (both set
    is an error); ``wake_bias=f`` is, in distribution, ``sensor_focus=[{fraction: f, low:
    [0.25, 0.1], high: [1.0, 0.3]}]``, but keeps its own draws, so runs that use it get the
    same sensors for the same seed as before ``sensor_focus`` existed.

    ``data_weight="unit"``: ``data = mean_i sum_j (u_ij - d_ij)^2``, the mean squared
    non-dimensional velocity error (sum over the components ``j = u, v``, mean over the
    sensors ``i``). ``data_weight="noise"`` weights each component by its known noise variance:

    .. math:: \\text{data} = \\frac{1}{2N} \\sum_{i=1}^N \\sum_{j \\in \\{u, v\\}}
       \\frac{(u_{ij} - d_{ij})^2}{\\sigma_j^2}, \\qquad
       \\sigma_j = \\text{level} \\cdot \\mathrm{std}_i(d_{ij}),

    the reduced chi-square, averaged over sensors *and* components (so not the unit term's sum
    over components: with equal ``sigma_j = s`` it is ``unit / (2 s^2)``). ``level`` is the
    noise object's (:class:`pinn_exp.noise.GaussianNoise` adds ``level * std_j`` of the CLEAN
    column ``j``); ``std_j`` here is the unbiased std of the NOISY data over the sensors, since
    a user knows only the noisy data. It exceeds the clean one by the factor
    ``sqrt(1 + level^2)``, so at the truth (``u = clean``) ``E[data] = 1 / (1 + level^2)``
    (0.990 at 10 % noise), and a fit well below 1 fits the noise. It needs a noise with a
    ``level > 0``. Both are computed in non-dimensional units (the ratio is unit-free).
    ``data_scale`` multiplies either: below 1 it trusts the physics more than the sensors (a
    network bent toward the noise at the sensors leaves a residual that pulls Re away).

    The anchor holds ``Re / re_scale``: Adam moves a parameter by about its learning rate per
    step, so without the scale (``re_scale=1``) Re would move by ~1e-3 per step and need ~5e4
    steps from 50 to 100. The residuals, the outlet condition and RAR's residual use the
    current estimate, never the true Re.
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
        sensor_focus: Sequence[Mapping] | None = None,
        data_weight: str = "unit",
        data_scale: float = 1.0,
        **kwargs,
    ):
        super().__init__(generator, data_dir, **kwargs)
        re_initial = positive_float("re_initial", re_initial)
        self.re_scale = positive_float("re_scale", re_scale)
        if isinstance(n_sensors, bool) or not isinstance(n_sensors, int) or n_sensors < 2:
            raise ValueError(f"pde.n_sensors must be an integer >= 2, got {n_sensors!r}")
        ok = isinstance(wake_bias, int | float) and not isinstance(wake_bias, bool)
        if not (ok and 0 <= wake_bias <= 1):
            raise ValueError(f"pde.wake_bias must be a number in [0, 1], got {wake_bias!r}")
        self.sensor_focus = check_regions(sensor_focus, SENSOR_FOCUS)
        if self.sensor_focus is not None and wake_bias > 0:
            (x0, x1), (y0, y1) = WAKE_BOX
            raise ValueError(
                f"pde.wake_bias={wake_bias!r} and {SENSOR_FOCUS}="
                f"{plain_regions(self.sensor_focus)} both place sensors; use one: "
                f"pde.wake_bias=0 with the wake box as a region of {SENSOR_FOCUS} "
                f"({{fraction: {wake_bias:g}, low: [{x0:g}, {y0:g}], high: [{x1:g}, {y1:g}]}}), "
                f"or {SENSOR_FOCUS}=null"
            )
        self.data_weight = _data_weight(data_weight, noise)
        self.data_scale = positive_float("data_scale", data_scale)
        self.true_unknowns = {"re": self.re}
        self.unknowns["re"] = anchor(initial=re_initial / self.re_scale)
        self.unknowns.to(device=self.device, dtype=self.dtype)

        # Sensors, their clean values (the reference at the true Re) and the noise: all drawn
        # once from the run's generator, so every step sees the same data.
        if self.sensor_focus is None:
            n_wake = int(round(wake_bias * n_sensors))
            (x0, x1), y_range = WAKE_BOX
            points = [
                self.sensor_domain(n_sensors - n_wake, generator),
                self._fluid_points(
                    n_wake, generator, (x0, min(x1, self.length)), y_range, SENSOR_MARGIN
                ),
            ]
            self.x_data = torch.cat(points)
        else:
            self.x_data = draw_focused(
                self.sensor_domain, n_sensors, generator, self.sensor_focus, SENSOR_FOCUS
            )
        clean = self.reference.evaluate(self.x_data.cpu().numpy())[:, :2]
        self.uv_clean = torch.as_tensor(clean, dtype=self.dtype)
        self.uv_noisy = noise(self.uv_clean, generator)
        # The loss compares non-dimensional velocities, like the network's outputs.
        self.uv_data = (self.uv_noisy / self.u_mean).to(self.device)
        # data_weight="noise": 1 / sigma_j^2 per component, from the noisy data (class docstring).
        # sigma_j is non-dimensional, like the data the term compares against.
        self.data_sigma, self.data_precision = None, None
        if self.data_weight == "noise":
            std = (self.uv_noisy / self.u_mean).std(dim=0)
            if not bool((std > 0).all()):
                raise ValueError(
                    f"pde.data_weight='noise' needs every sensor component to vary, but the "
                    f"noisy (u, v) have std {std.tolist()} (non-dimensional) over the "
                    f"{n_sensors} sensors; use pde.data_weight=unit"
                )
            self.data_sigma = noise.level * std
            self.data_precision = (1.0 / self.data_sigma**2).to(self.device)

    def sensor_domain(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` uniform points of the fluid that keep :data:`SENSOR_MARGIN` from the cylinder:
        the domain that ``sensor_focus`` regions are drawn from."""
        return self._fluid_points(n, generator, (0.0, self.length), (0.0, HEIGHT), SENSOR_MARGIN)

    def current_re(self) -> Tensor:
        return self.re_scale * self.unknowns["re"].value()

    def inv_re(self) -> Tensor:
        return 1.0 / self.current_re()

    def unknown_values(self) -> dict[str, float]:
        return {"re": float(self.current_re().detach())}

    def loss_points(self) -> dict[str, Tensor]:
        return super().loss_points() | {"data": self.x_data}

    def point_terms(self, at: dict[str, list]) -> dict[str, Tensor]:
        squared = (at["data"][0][:, :2] - self.uv_data) ** 2
        if self.data_precision is None:
            data = squared.sum(1).mean()
        else:
            data = (squared * self.data_precision).mean()
        return {"data": self.data_scale * data} | super().point_terms(at)

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
        if self.data_precision is not None:
            self.data_precision = self.data_precision.to(self.device)
        return self


def _data_weight(data_weight: object, noise: Noise) -> str:
    """``pde.data_weight`` checked; ``"noise"`` also needs the noise's level to be > 0."""
    if not isinstance(data_weight, str) or data_weight not in DATA_WEIGHTS:
        allowed = " or ".join(repr(w) for w in DATA_WEIGHTS)
        raise ValueError(f"pde.data_weight must be {allowed}, got {data_weight!r}")
    if data_weight == "noise":
        level = getattr(noise, "level", None)
        ok = isinstance(level, numbers.Real) and not isinstance(level, bool)
        if not (ok and math.isfinite(level) and level > 0):
            has = "no level" if level is None else f"level={level!r}"
            raise ValueError(
                f"pde.data_weight='noise' divides the data term by the noise variance "
                f"(level * std)^2, but noise={noise!r} has {has}; use noise=gaussian with "
                f"noise.level > 0, or pde.data_weight=unit"
            )
    return data_weight
