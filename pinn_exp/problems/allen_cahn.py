"""Allen-Cahn: ``u_t - d u_xx + k (u^3 - u) = 0``, x in [-1, 1] periodic, t in [0, 1],
``u(0, x) = x^2 cos(pi x)``; the reference is Fourier pseudo-spectral with ETDRK4."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from pinn_exp.derivatives import stream_partials, use_stacked  # noqa: E402
from pinn_exp.jets import MultiIndex  # noqa: E402
from pinn_exp.models import gradient  # noqa: E402
from pinn_exp.problems.base import Evaluation, Problem, rel_l2  # noqa: E402
from pinn_exp.reference.allen_cahn import (  # noqa: E402
    AllenCahnReference,
    load_or_build_allen_cahn,
)

CAUSAL_CUTOFF = 100.0
"""Causal weights ``exp(-eps * past)`` with an exponent above this are exactly 0 (see
:func:`causal_weights`)."""

# The partials of u that the residual needs, as multi-indices over (t, x): u_t, u_x, u_xx
# (u_x only because the chain rule needs it for u_xx).
RESIDUAL_PARTIALS: tuple[MultiIndex, ...] = ((0,), (1,), (1, 1))


EVAL_N = 512
"""Points in x of the evaluation grid (and of the sensors' candidate positions)."""


def evaluation_grid(ref: AllenCahnReference) -> AllenCahnReference:
    """The reference on the 512-point x grid (every n/512-th point of a finer solve).

    Why finer: u0 is only C^0 as a periodic function (its slope jumps at x = +-1), so the
    spectral reference converges algebraically, at about second order in n. Measured against
    n = 2048: rel L2 1.1e-5 at n = 512 and 2.7e-6 at n = 1024, so n = 512 would blur errors
    below ~1e-5 (``python scripts/make_reference.py allen_cahn --compare 512 1024 2048``).
    """
    step = len(ref.x) // EVAL_N
    return AllenCahnReference(t=ref.t, x=ref.x[::step], u=ref.u[:, ::step], d=ref.d, k=ref.k)


def initial_condition(x: Tensor) -> Tensor:
    return x**2 * torch.cos(math.pi * x)


def causal_weights(exponent: Tensor) -> Tensor:
    """``exp(-exponent)``, but exactly 0 where ``exponent > CAUSAL_CUTOFF`` (100).

    Without the cut-off, weights of late slabs underflow into subnormal numbers, and so do the
    gradients they scale on the way back through the network; subnormal float64 arithmetic is
    ~100x slower on x86 (measured: ~5 ms of a 35 ms Allen-Cahn step). The weight of the first
    slab is always 1, so a weight below ``exp(-100) ~ 4e-44`` changes the loss and its gradient
    by ~1e-44 relative to that slab's share: nothing a float64 result can show.
    """
    capped = exponent.clamp(max=CAUSAL_CUTOFF)  # no subnormal exp either
    return torch.where(exponent > CAUSAL_CUTOFF, 0.0, torch.exp(-capped))


class AllenCahn(Problem):
    """Forward Allen-Cahn problem with named terms ``pde``, ``ic`` and (without the periodic
    embedding) ``bc``.

    Inputs are ``(t, x)``. With ``periodic_embedding`` the network sees
    ``(2t - 1, cos(pi x), sin(pi x))``, which is exactly periodic in x (Dong & Ni 2021, "A method
    for representing periodic functions and enforcing exactly periodic boundary conditions with
    deep neural networks"), so the ``bc`` term disappears. ``causal_eps > 0`` weights the residual
    of time slab i by ``exp(-eps * sum_{j<i} L_j)`` (Wang, Sankaran & Perdikaris 2022,
    "Respecting causality is all you need for training PINNs").

    ``u``, ``u_t`` and ``u_xx`` come from one forward pass of stacked streams
    (:func:`pinn_exp.derivatives.stream_partials`, with the embedding's chain rule) for SIREN
    and MLP (``derivatives="stacked"``, optionally ``compile``-d), or from nested autograd
    (``"autograd"``, the reference, and the fallback for other models).
    """

    fields = ("u",)
    residual_terms = ("pde",)
    point_labels = ("t", "x")
    out_dim = 1

    def __init__(
        self,
        generator: torch.Generator,
        data_dir: str | Path,
        d: float = 1e-4,
        k: float = 5.0,
        n_ic: int = 512,
        n_bc: int = 256,
        reference_n: int = 2048,
        periodic_embedding: bool = True,
        causal_eps: float = 0.0,
        causal_chunks: int = 32,
        derivatives: str = "stacked",
        compile: bool = False,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        if d < 0:
            raise ValueError(f"pde.d must be >= 0, got {d!r}")
        for name, value in [("n_ic", n_ic), ("n_bc", n_bc), ("causal_chunks", causal_chunks)]:
            if not (isinstance(value, int) and value > 0):
                raise ValueError(f"pde.{name} must be a positive integer, got {value!r}")
        if causal_eps < 0:
            raise ValueError(f"pde.causal_eps must be >= 0, got {causal_eps!r}")
        if derivatives not in ("stacked", "autograd"):
            raise ValueError(
                f"pde.derivatives must be 'stacked' or 'autograd', got {derivatives!r}"
            )
        if not isinstance(compile, bool):
            raise ValueError(f"pde.compile must be true or false, got {compile!r}")
        self.derivatives, self.compile = derivatives, compile
        self._compiled = None
        self.d, self.k = float(d), float(k)
        self.periodic_embedding = periodic_embedding
        self.causal_eps, self.causal_chunks = float(causal_eps), causal_chunks
        self.dtype, self.device = dtype, torch.device(device)
        self.n_features = 3 if periodic_embedding else 2
        if not (
            isinstance(reference_n, int) and reference_n >= EVAL_N and reference_n % EVAL_N == 0
        ):
            raise ValueError(
                f"pde.reference_n must be a multiple of {EVAL_N} (512, 1024, 2048, ...), "
                f"got {reference_n!r}"
            )
        self.reference = evaluation_grid(
            load_or_build_allen_cahn(
                Path(data_dir) / f"allen_cahn_d{self.d:g}_k{self.k:g}_n{reference_n}.h5",
                d=self.d,
                k=self.k,
                n=reference_n,
            )
        )
        opts = dict(dtype=dtype, device=self.device)
        # Initial and boundary points are fixed for the run, drawn once from the run's generator.
        x_ic = 2 * torch.rand(n_ic, 1, generator=generator, dtype=dtype) - 1
        self.x_ic = torch.cat([torch.zeros_like(x_ic), x_ic], dim=1).to(**opts)
        self.u_ic = initial_condition(self.x_ic[:, 1])
        self.t_bc = torch.rand(n_bc, 1, generator=generator, dtype=dtype).to(**opts)
        tt, xx = np.meshgrid(self.reference.t, self.reference.x, indexing="ij")
        self.eval_points = torch.as_tensor(np.stack([tt.ravel(), xx.ravel()], 1), **opts)

    def features(self, x: Tensor) -> Tensor:
        t, s = x[:, :1], x[:, 1:2]
        if self.periodic_embedding:
            return torch.cat([2 * t - 1, torch.cos(math.pi * s), torch.sin(math.pi * s)], 1)
        return torch.cat([2 * t - 1, s], 1)

    def sample_domain(self, n: int, generator: torch.Generator) -> Tensor:
        u = torch.rand(n, 2, generator=generator, dtype=self.dtype)
        return torch.stack([u[:, 0], 2 * u[:, 1] - 1], 1).to(self.device)

    def feature_partials(self, x: Tensor) -> tuple[Tensor, dict[MultiIndex, Tensor]]:
        """The features and their nonzero partials d/dt, d/dx, d2/dx2 (indices ``(0,)``,
        ``(1,)``, ``(1, 1)``): per point (n, F) or constant (F,).

        Periodic: ``f = (2t - 1, cos(pi x), sin(pi x))``, so ``f_t = (2, 0, 0)``,
        ``f_x = pi (0, -sin(pi x), cos(pi x))`` and ``f_xx = -pi^2 (0, cos(pi x), sin(pi x))``;
        otherwise ``f = (2t - 1, x)``, affine, with constant ``f_t`` and ``f_x``.
        """
        f = self.features(x)
        if not self.periodic_embedding:
            return f, {(0,): x.new_tensor([2.0, 0.0]), (1,): x.new_tensor([0.0, 1.0])}
        cos, sin = f[:, 1:2], f[:, 2:3]
        zero = torch.zeros_like(cos)
        partials = {
            (0,): x.new_tensor([2.0, 0.0, 0.0]),
            (1,): math.pi * torch.cat([zero, -sin, cos], 1),
            (1, 1): -(math.pi**2) * torch.cat([zero, cos, sin], 1),
        }
        return f, partials

    def u(self, model: nn.Module, x: Tensor) -> Tensor:
        return model(self.features(x))[:, 0]

    def current_d(self) -> Tensor | float:
        """The diffusion coefficient in the residual; the inverse problem returns its estimate."""
        return self.d

    def residual(self, model: nn.Module, x: Tensor, d: Tensor | float | None = None) -> Tensor:
        """Signed residual ``u_t - d u_xx + k (u^3 - u)``, with ``d = current_d()`` by default."""
        return self._combine(*self.u_partials(model, x), d)

    def _combine(
        self, u: Tensor, u_t: Tensor, u_xx: Tensor, d: Tensor | float | None = None
    ) -> Tensor:
        d = self.current_d() if d is None else d
        return u_t - d * u_xx + self.k * (u**3 - u)

    def u_partials(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``u``, ``u_t`` and ``u_xx`` (each (n,)) at points ``x``, by the configured path
        (``compile`` applies to the stacked one)."""
        if not use_stacked(self.derivatives, model):
            return self.nested_partials(model, x)
        if not self.compile:
            return self.stacked_partials(model, x)
        if self._compiled is None:
            # Built on first use: compiling costs 6-20 s on 2 busy cores (~4 s from inductor's
            # on-disk cache). One graph per point count (dynamic=False): a training run has
            # one, and RAR's candidate pool goes through pointwise_residual, never compiled.
            self._compiled = torch.compile(self.stacked_partials, dynamic=False)
        return self._compiled(model, x)

    def stacked_partials(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``u``, ``u_t``, ``u_xx`` by one forward pass of 4 stacked streams (value, d/dt,
        d/dx, d2/dx2) through a SIREN or MLP, trained by one ordinary backward."""
        features, partials = self.feature_partials(x)
        out = stream_partials(model, features, partials, RESIDUAL_PARTIALS)
        return out[()][:, 0], out[(0,)][:, 0], out[(1, 1)][:, 0]

    def nested_partials(self, model: nn.Module, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``u``, ``u_t``, ``u_xx`` by nested autograd, for any model (the reference)."""
        x = x.detach().requires_grad_(True)
        u = self.u(model, x)
        du = gradient(u, x)
        u_xx = gradient(du[:, 1], x)[:, 1]
        return u, du[:, 0], u_xx

    def _pde_loss(self, x: Tensor, r: Tensor) -> Tensor:
        if self.causal_eps == 0:
            return (r**2).mean()
        chunk = torch.clamp((x[:, 0] * self.causal_chunks).long(), max=self.causal_chunks - 1)
        sums = torch.zeros(self.causal_chunks, dtype=r.dtype, device=r.device)
        counts = torch.zeros_like(sums)
        sums = sums.index_add(0, chunk, r**2)
        counts = counts.index_add(0, chunk, torch.ones_like(r))
        slab = sums / counts.clamp(min=1)
        # Weights are detached: they gate which slabs train, they are not trained themselves.
        past = torch.cumsum(slab.detach(), 0) - slab.detach()
        return (causal_weights(self.causal_eps * past) * slab).mean()

    def losses(self, model: nn.Module, x: Tensor) -> dict[str, Tensor]:
        terms = {"pde": self._pde_loss(x, self.residual(model, x))}
        terms["ic"] = ((self.u(model, self.x_ic) - self.u_ic) ** 2).mean()
        if not self.periodic_embedding:
            terms["bc"] = self._periodic_loss(model)
        return terms

    def _periodic_loss(self, model: nn.Module) -> Tensor:
        left = torch.cat([self.t_bc, -torch.ones_like(self.t_bc)], 1).requires_grad_(True)
        right = torch.cat([self.t_bc, torch.ones_like(self.t_bc)], 1).requires_grad_(True)
        u_l, u_r = self.u(model, left), self.u(model, right)
        ux_l, ux_r = gradient(u_l, left)[:, 1], gradient(u_r, right)[:, 1]
        return ((u_l - u_r) ** 2).mean() + ((ux_l - ux_r) ** 2).mean()

    def pointwise_residual(self, model: nn.Module, x: Tensor) -> Tensor:
        if use_stacked(self.derivatives, model, warn=False):
            # A plain forward pass: no graph is needed to rank points. Never the compiled
            # function: RAR's candidate pool has another size, and would compile again.
            with torch.no_grad():
                return self._combine(*self.stacked_partials(model, x)).abs()
        return self.residual(model, x).abs().detach()

    @torch.no_grad()
    def predict(self, model: nn.Module, x: Tensor, chunk: int = 32768) -> Tensor:
        return torch.cat([self.u(model, part) for part in x.split(chunk)])

    def evaluate(self, model: nn.Module) -> Evaluation:
        ref = self.reference
        pred = self.predict(model, self.eval_points).cpu().numpy().reshape(ref.u.shape)
        err = rel_l2(pred, ref.u)
        return Evaluation(
            metrics={"rel_l2": err, "rel_l2_u": err},
            coords=self.eval_points.cpu().numpy(),
            prediction={"u": pred},
            reference={"u": ref.u},
            grid_shape=ref.u.shape,
            extra={"t": ref.t, "x": ref.x},
        )

    def figure(self, evaluation: Evaluation):
        return grid_figure(
            evaluation.prediction["u"],
            evaluation.reference["u"],
            evaluation.extra["t"],
            evaluation.extra["x"],
            "u",
        )


def grid_figure(pred: np.ndarray, ref: np.ndarray, t: np.ndarray, x: np.ndarray, name: str):
    """Prediction, reference and absolute error as three (x, t) heat maps."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), constrained_layout=True)
    extent = [t[0], t[-1], x[0], x[-1]]
    panels = [(pred, f"PINN {name}"), (ref, f"reference {name}"), (np.abs(pred - ref), "|error|")]
    for ax, (data, title) in zip(axes, panels):
        im = ax.imshow(data.T, origin="lower", aspect="auto", extent=extent, cmap="RdBu_r")
        ax.set(title=title, xlabel="t", ylabel="x")
        fig.colorbar(im, ax=ax)
    return fig
