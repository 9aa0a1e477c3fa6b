"""Steady incompressible Navier-Stokes flow past a cylinder: the DFG 2D channel of Schaefer &
Turek (1996, "Benchmark computations of laminar flow around a cylinder", Notes Numer. Fluid
Mech. 52:547-566); the reference is the Taylor-Hood finite-element solution of
:mod:`pinn_exp.reference.navier_stokes`.

:class:`NavierStokes` holds the options, the network's fields and their input derivatives
(velocity or stream formulation, stacked or nested autograd), the residuals, the named loss
terms and the evaluation. The channel's points, boundary data and boundary terms are in
:mod:`pinn_exp.problems.channel`, the exact boundary conditions in
:mod:`pinn_exp.problems.cylinder_constraints`, the forces in :mod:`pinn_exp.problems.forces`
and the scoring against the reference in :mod:`pinn_exp.problems.flow_metrics`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pinn_exp.derivatives import (
    nested_autograd,
    nested_partials,
    taylor_partials,
    use_stacked,
)
from pinn_exp.derivatives import value_and_derivatives as stacked_derivatives
from pinn_exp.problems.base import Evaluation, Problem
from pinn_exp.problems.channel import (
    BoundaryData,
    boundary_points,
    boundary_terms,
    fluid_points,
    stream_targets,
    velocity_from_stream,
    velocity_targets,
)
from pinn_exp.problems.checks import positive_float, positive_int
from pinn_exp.problems.cylinder_constraints import StreamConstraint, compose
from pinn_exp.problems.figures import scattered_figure
from pinn_exp.problems.flow_metrics import against_reference, flow_errors
from pinn_exp.problems.forces import cylinder_quadrature, force_coefficients
from pinn_exp.reference.mesh import CYLINDER_CENTER, CYLINDER_RADIUS, DIAMETER, HEIGHT
from pinn_exp.reference.navier_stokes import DP_POINTS, drag_lift_dp
from pinn_exp.reference.navier_stokes_cache import load_or_build_navier_stokes


class NavierStokes(Problem):
    """Forward problem: ``(u.grad)u + grad p - (1/Re) lap u = 0``, ``div u = 0``.

    Points are dimensional ``(x, y)`` in the channel ``[0, L] x [0, H]`` (H = 0.41) minus the
    cylinder of diameter D = 0.1 at (0.2, 0.2). Inside, everything is non-dimensional
    (``x* = x / D``, ``u* = u / U_mean``, ``p* = p / (rho U_mean^2)``, ``U_mean = 2 U_m / 3``), so
    the only parameter is ``Re = U_mean D / nu`` and the network's outputs ``(u*, v*, p*)`` are
    O(1); its inputs are ``(2x/L - 1, 2y/H - 1)``.

    Terms: ``momentum_x``, ``momentum_y``, ``continuity`` (mean squared residuals at the
    collocation points); ``inlet`` (parabolic ``u* = 6 y (H - y) / H^2``, ``v* = 0``),
    ``walls`` and ``cylinder`` (no slip), each the mean squared velocity error; ``outlet``, the
    do-nothing condition ``(1/Re) du*/dx* - p* = 0``, ``dv*/dx* = 0`` at x = L (its second
    component divided by nu, which is equivalent and keeps it O(1)). Boundary points are drawn
    once from the generator.

    ``momentum="joint"`` makes the two momentum components one term ``momentum`` (the mean
    squared norm of the residual vector): the per-term gradients (K x P) then need one backward
    pass through the collocation points' graph instead of two, for a balancer that would only
    weigh one equation's two components against each other.

    ``formulation="stream"`` makes the network output ``(psi*, p*)`` with ``u* = dpsi*/dy*``,
    ``v* = -dpsi*/dx*``: the flow is divergence-free by construction and ``continuity`` is no
    term; ``inlet`` and ``walls`` add the squared error of psi* (the inflow's integral
    ``H* s^2 (3 - 2 s)``, so 0 on the bottom wall and the flux ``H*`` on the top one). With
    velocity outputs, a small continuity loss at scattered points let the flux leak away
    behind the inlet (measured: the velocity vanished within 0.05 of the inlet while every
    loss was < 1e-4); with psi and velocity-only wall conditions, a small wall-normal velocity
    error, integrated along the 22-diameter walls, still halved the flux (measured); psi's
    wall values fix it everywhere. The residual needs psi's third derivatives
    (:func:`pinn_exp.derivatives.taylor_partials`).

    Derivatives come from stacked forward-mode streams (:mod:`pinn_exp.derivatives`) for SIREN
    and MLP (``derivatives="stacked"``, optionally ``compile``-d), or from nested autograd
    (``"autograd"``, the reference, and the fallback for other models).

    ``dirichlet_velocity`` and ``outlet_data`` replace the boundary data (non-dimensional
    points -> non-dimensional ``(u, v)`` on inlet, walls and cylinder, and targets of
    ``(u_x/Re - p, v_x)`` at the outlet), and ``stream_data`` psi* on inlet and walls; they
    exist to test the residuals on exact solutions.
    The reference is solved (or read from ``data_dir``) only when first needed; ``refinement``
    is its mesh level (see :func:`pinn_exp.reference.navier_stokes.solve_navier_stokes`).
    """

    fields = ("u", "v", "p")
    residual_terms = ("momentum_x", "momentum_y", "continuity")
    point_labels = ("x", "y")
    out_dim = 3
    n_features = 2

    def __init__(
        self,
        generator: torch.Generator,
        data_dir: str | Path,
        re: float = 100.0,
        u_max: float = 1.5,
        length: float = 2.2,
        n_inlet: int = 64,
        n_wall: int = 128,
        n_cylinder: int = 64,
        n_outlet: int = 64,
        refinement: int = 4,
        derivatives: str = "stacked",
        compile: bool = False,
        formulation: str = "velocity",
        hard_bc: bool = False,
        blend_radius: float = 1.5,
        momentum: str = "split",
        dirichlet_velocity: BoundaryData | None = None,
        outlet_data: BoundaryData | None = None,
        stream_data: Callable[[Tensor], Tensor] | None = None,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        self.re = positive_float("re", re)
        self.u_max = positive_float("u_max", u_max)
        # The reference solver needs some channel behind the cylinder (x >= 0.5).
        self.length = positive_float("length", length, minimum=0.5 - 1e-12)
        counts = dict(n_inlet=n_inlet, n_wall=n_wall, n_cylinder=n_cylinder, n_outlet=n_outlet)
        for name, value in counts.items():
            positive_int(name, value)
        if n_wall < 2:
            raise ValueError(f"pde.n_wall must be >= 2 (both walls), got {n_wall!r}")
        if isinstance(refinement, bool) or not isinstance(refinement, int):
            raise ValueError(f"pde.refinement must be an integer in [1, 64], got {refinement!r}")
        if not 1 <= refinement <= 64:
            raise ValueError(f"pde.refinement must be an integer in [1, 64], got {refinement!r}")
        if derivatives not in ("stacked", "autograd"):
            raise ValueError(
                f"pde.derivatives must be 'stacked' or 'autograd', got {derivatives!r}"
            )
        if not isinstance(compile, bool):
            raise ValueError(f"pde.compile must be true or false, got {compile!r}")
        if formulation not in ("velocity", "stream"):
            raise ValueError(f"pde.formulation must be 'velocity' or 'stream', got {formulation!r}")
        self.formulation = formulation
        if momentum not in ("split", "joint"):
            raise ValueError(f"pde.momentum must be 'split' or 'joint', got {momentum!r}")
        self.momentum = momentum
        if not isinstance(hard_bc, bool):
            raise ValueError(f"pde.hard_bc must be true or false, got {hard_bc!r}")
        if hard_bc and formulation != "stream":
            raise ValueError(
                "pde.hard_bc=true needs pde.formulation=stream (the exact conditions are built on "
                f"the stream function), got pde.formulation={formulation!r}"
            )
        if hard_bc and (dirichlet_velocity is not None or stream_data is not None):
            raise ValueError("hard_bc builds the DFG inflow and no slip; it takes no boundary data")
        self.hard_bc = hard_bc
        if formulation == "stream":
            # (psi, p): continuity holds exactly, so it is no loss term.
            self.out_dim, self.residual_terms = 2, ("momentum_x", "momentum_y")
        if momentum == "joint":  # one term for the momentum equation's two components
            self.residual_terms = ("momentum", *self.residual_terms[2:])
        self.refinement, self.derivatives, self.compile = refinement, derivatives, compile
        self.data_dir = Path(data_dir)
        self.dtype, self.device = dtype, torch.device(device)
        self.u_mean = 2.0 * self.u_max / 3.0
        # Non-dimensional channel size, and d features / d x* for the feature map below.
        self.size_nd = (self.length / DIAMETER, HEIGHT / DIAMETER)
        self.constraint = None
        if hard_bc:
            centre = (CYLINDER_CENTER[0] / DIAMETER, CYLINDER_CENTER[1] / DIAMETER)
            blend = positive_float("blend_radius", blend_radius)
            try:
                self.constraint = StreamConstraint(
                    self.size_nd[1], centre, CYLINDER_RADIUS / DIAMETER, blend
                )
            except ValueError as error:
                raise ValueError(f"pde.{error}") from None
        self.jac = torch.tensor([2 / self.size_nd[0], 2 / self.size_nd[1]], dtype=dtype)
        self.jac = self.jac.to(self.device)
        self._compiled = {}

        # Fixed boundary points (dimensional), drawn once from the run's generator.
        boundary = boundary_points(generator, self.length, dtype=dtype, **counts)
        self.boundary = {k: v.to(self.device) for k, v in boundary.items()}
        self.boundary_targets = velocity_targets(
            self.boundary, self.size_nd, dirichlet_velocity, outlet_data, dtype, self.device
        )
        self.stream_targets = stream_targets(
            self.boundary, self.size_nd, stream_data, dtype, self.device
        )

    # --- reference (lazy: the FE solve is only needed for evaluation) ----------------------
    @property
    def reference_path(self) -> Path:
        return self.data_dir / (
            f"navier_stokes_re{self.re:g}_um{self.u_max:g}_L{self.length:g}_r{self.refinement}.h5"
        )

    @cached_property
    def reference(self):
        return load_or_build_navier_stokes(
            self.reference_path,
            re=self.re,
            u_max=self.u_max,
            length=self.length,
            refinement=self.refinement,
            log=lambda line: print(line, file=sys.stderr),
        )

    # --- points and features ------------------------------------------------------------------
    def features(self, x: Tensor) -> Tensor:
        return torch.stack([2 * x[:, 0] / self.length - 1, 2 * x[:, 1] / HEIGHT - 1], 1)

    def sample_domain(self, n: int, generator: torch.Generator) -> Tensor:
        return self._fluid_points(n, generator, (0.0, self.length), (0.0, HEIGHT))

    def _fluid_points(
        self,
        n: int,
        generator: torch.Generator,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        margin: float = 0.0,
    ) -> Tensor:
        """:func:`~pinn_exp.problems.channel.fluid_points` on the problem's device."""
        return fluid_points(n, generator, x_range, y_range, self.dtype, margin).to(self.device)

    # --- derivatives and residuals --------------------------------------------------------
    def inv_re(self) -> Tensor | float:
        """1/Re in the residual; the inverse problem returns its current estimate."""
        return 1.0 / self.re

    def outputs_and_derivatives(
        self, model: nn.Module, x: Tensor, order: int = 2
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(u*, v*, p*)`` (n, 3), their x*- and y*-derivatives (n, 2, 3) and pure second
        derivatives (n, 2, 3) at dimensional points ``x``; the derivatives are None below
        ``order`` 1 and 2. In the stream formulation they come from the network's
        ``(psi*, p*)``, with ``u* = dpsi*/dy*`` and ``v* = -dpsi*/dx*``."""
        if order not in (0, 1, 2):
            raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
        if self.formulation == "stream":
            return velocity_from_stream(self._partials(model, x, order + 1), order)
        if order == 0:
            return model(self.features(x)), None, None
        f, jac = self.features(x), self.jac.to(x)
        if use_stacked(self.derivatives, model):
            return self._stacked(stacked_derivatives)(model, f, jac, order)
        # p's second derivatives do not enter the residual: skip their two backward passes.
        return nested_autograd(model, f, jac, order, second=(0, 1))

    def _stacked(self, function):
        if not self.compile:
            return function
        if function not in self._compiled:
            # Built on first use: compiling costs about a minute and is not always wanted.
            self._compiled[function] = torch.compile(function)
        return self._compiled[function]

    def _partials(self, model: nn.Module, x: Tensor, order: int) -> dict:
        f, jac = self.features(x), self.jac.to(x)
        if use_stacked(self.derivatives, model):
            d = self._stacked(taylor_partials)(model, f, jac, order)
        else:
            d = nested_partials(model, f, jac, order)
        if self.constraint is None:
            return d
        geometry = self.constraint.partials(x / DIAMETER, order)
        return compose(geometry, d, self.cylinder_stream(model))

    def cylinder_stream(self, model: nn.Module) -> Tensor:
        """psi* on the cylinder under hard conditions: the inflow's value at the centre's height
        plus the network's stream output at the centre (outside the fluid: a free constant)."""
        centre = torch.tensor([CYLINDER_CENTER], dtype=self.dtype, device=self.device)
        offset = model(self.features(centre))[0, 0]
        return self.constraint.inflow_stream(CYLINDER_CENTER[1] / DIAMETER) + offset

    def residual_components(
        self, model: nn.Module, x: Tensor, inv_re: Tensor | float | None = None
    ) -> Tensor:
        """Signed non-dimensional residuals (momentum x, momentum y, continuity), (n, 3)."""
        inv_re = self.inv_re() if inv_re is None else inv_re
        inviscid, laplacian, divergence = self._momentum_parts(model, x)
        momentum = inviscid - inv_re * laplacian
        return torch.cat([momentum, divergence.unsqueeze(1)], 1)

    def _momentum_parts(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(u.grad)u + grad p`` and ``lap u`` (n, 2), and ``div u`` (n,): the momentum residual
        is the first minus ``lap u / Re``."""
        y, dy, d2y = self.outputs_and_derivatives(model, x)
        u, v = y[:, 0], y[:, 1]
        (u_x, v_x, p_x), (u_y, v_y, p_y) = dy[:, 0].unbind(1), dy[:, 1].unbind(1)
        inviscid = torch.stack([u * u_x + v * u_y + p_x, u * v_x + v * v_y + p_y], 1)
        laplacian = (d2y[:, 0] + d2y[:, 1])[:, :2]
        return inviscid, laplacian, u_x + v_y

    def _fields(self, model: nn.Module, x: Tensor, order: int) -> tuple:
        """``outputs_and_derivatives`` plus the stream value psi* (None for velocity outputs)."""
        if self.formulation != "stream":
            return (*self.outputs_and_derivatives(model, x, order), None)
        d = self._partials(model, x, order + 1)
        return (*velocity_from_stream(d, order), d[()][:, 0])

    def loss_points(self) -> dict[str, Tensor]:
        """The fixed point sets of the non-residual terms (boundary; the inverse adds sensors);
        a boundary that holds by construction has none."""
        names = ("outlet",) if self.hard_bc else ("inlet", "walls", "cylinder", "outlet")
        return {name: self.boundary[name] for name in names}

    def losses(self, model: nn.Module, x: Tensor) -> dict[str, Tensor]:
        """Residual terms at ``x``, then the other terms (:meth:`point_terms`), each point set
        through its own forward pass, so that a term's gradient is a backward pass over its own
        graph only. Batching the sets into one forward pass costs more when the per-term
        gradients (K x P) are wanted, since every term's backward then runs through the whole
        batch: measured (``scripts/bench_step.py``, docs/results/step_time.md) 3.4-3.8x the plain
        step with all sets in one pass, 1.5-2.1x with the fixed sets batched, 1.4-1.5x apart."""
        r = self.residual_components(model, x)
        if self.momentum == "joint":
            terms = {"momentum": (r[:, :2] ** 2).sum(1).mean()}
            if "continuity" in self.residual_terms:
                terms["continuity"] = (r[:, 2] ** 2).mean()
        else:
            terms = {name: (r[:, i] ** 2).mean() for i, name in enumerate(self.residual_terms)}
        # The outlet needs first derivatives of (u, v, p), so psi's second; nothing here more.
        at = {name: self._fields(model, pts, 1) for name, pts in self.loss_points().items()}
        return terms | self.point_terms(at)

    def point_terms(self, at: dict[str, list]) -> dict[str, Tensor]:
        """Inlet, wall and cylinder velocity (and stream) errors and the do-nothing outlet
        residual (:func:`~pinn_exp.problems.channel.boundary_terms`), from ``at[name] = [y, dy,
        None, psi]`` on each of :meth:`loss_points`."""
        return boundary_terms(at, self.boundary_targets, self.stream_targets, self.inv_re)

    def _graph_free(self, model: nn.Module):
        # The stacked path is a plain forward pass: no graph is needed to rank or predict.
        return (
            torch.no_grad()
            if use_stacked(self.derivatives, model, warn=False)
            else torch.enable_grad()
        )

    def pointwise_residual(self, model: nn.Module, x: Tensor) -> Tensor:
        with self._graph_free(model):
            return self.residual_components(model, x).norm(dim=1).detach()

    def preferred_re(self, model: nn.Module, x: Tensor) -> dict[str, float]:
        """The Re that this fixed field fits best: the least-squares ``Re* = <B, B> / <A, B>`` of
        ``|A - B / Re|^2`` with ``A = (u.grad)u + grad p`` and ``B = lap u`` at points ``x``,
        overall (``"all"``), within one diameter of the cylinder's centre (``"near"``) and
        beyond (``"away"``). An inverse run's residual pulls Re toward it."""
        inviscid, laplacian, _ = self._momentum_parts(model, x)
        a, b = inviscid.detach().T.reshape(-1), laplacian.detach().T.reshape(-1)
        centre = torch.tensor(CYLINDER_CENTER, dtype=x.dtype, device=x.device)
        near = ((x - centre).norm(dim=1) < DIAMETER).repeat(2)
        masks = {"all": torch.ones_like(near), "near": near, "away": ~near}
        return {k: float((b[m] ** 2).sum() / (a[m] * b[m]).sum()) for k, m in masks.items()}

    # --- evaluation ---------------------------------------------------------------------------
    def predict(self, model: nn.Module, x: Tensor, chunk: int = 32768) -> Tensor:
        """Dimensional ``(u, v, p)`` (n, 3) at dimensional points ``x``."""
        with self._graph_free(model) if self.formulation == "stream" else torch.no_grad():
            parts = [self.outputs_and_derivatives(model, part, 0)[0] for part in x.split(chunk)]
        y = torch.cat(parts).detach()
        scale = torch.tensor([self.u_mean, self.u_mean, self.u_mean**2]).to(y)
        return y * scale

    def evaluate(self, model: nn.Module) -> Evaluation:
        """Relative L2 errors on the reference's evaluation grid (dimensional units; see
        :func:`~pinn_exp.problems.flow_metrics.flow_errors`), then :meth:`force_metrics`."""
        ref = self.reference
        pts = torch.tensor(ref.eval_points, dtype=self.dtype, device=self.device)
        pred = self.predict(model, pts).cpu().numpy()
        true = np.asarray(ref.eval_values)
        metrics = flow_errors(pred, true)
        metrics |= self.force_metrics(model)
        return Evaluation(
            metrics=metrics,
            coords=np.asarray(ref.eval_points),
            prediction={f: pred[:, i] for i, f in enumerate(self.fields)},
            reference={f: true[:, i].copy() for i, f in enumerate(self.fields)},
        )

    @cached_property
    def reference_forces(self) -> dict[str, float]:
        cd, cl, dp = drag_lift_dp(self.reference)
        return {"cd": cd, "cl": cl, "dp": dp}

    def forces(self, model: nn.Module, n: int = 256) -> dict[str, float]:
        """The PINN's drag and lift coefficients (its stress integrated over the cylinder by the
        trapezoid rule, :mod:`pinn_exp.problems.forces`) and the DFG pressure difference
        ``dp = p(0.15, 0.2) - p(0.25, 0.2)`` (dimensional, rho = 1)."""
        pts, normals, weights = cylinder_quadrature(n, self.dtype, self.device)
        with self._graph_free(model):
            y, dy, _ = self.outputs_and_derivatives(model, pts, order=1)
            cd, cl = force_coefficients(y, dy, normals, weights, self.inv_re())
        p = self.predict(model, torch.tensor(DP_POINTS, dtype=self.dtype, device=self.device))
        return {"cd": float(cd), "cl": float(cl), "dp": float(p[0, 2] - p[1, 2])}

    def force_metrics(self, model: nn.Module) -> dict[str, float]:
        """``cd``, ``cl``, ``dp``, their reference values (``<name>_ref``, the FE volume-integral
        forces) and relative errors (``<name>_rel_error``)."""
        return against_reference(self.forces(model), self.reference_forces)

    def figure(self, evaluation: Evaluation):
        return scattered_figure(evaluation, self.fields)

    def to(self, device: torch.device) -> NavierStokes:
        self.device = torch.device(device)
        self.jac = self.jac.to(self.device)
        self.boundary = {k: v.to(self.device) for k, v in self.boundary.items()}
        self.boundary_targets = {k: v.to(self.device) for k, v in self.boundary_targets.items()}
        self.stream_targets = {k: v.to(self.device) for k, v in self.stream_targets.items()}
        self.unknowns.to(self.device)
        return self
