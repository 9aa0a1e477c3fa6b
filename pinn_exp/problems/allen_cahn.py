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

from pinn_exp.models import gradient  # noqa: E402
from pinn_exp.problems.base import Evaluation, Problem, rel_l2  # noqa: E402
from pinn_exp.reference.allen_cahn import load_or_build_allen_cahn  # noqa: E402


def initial_condition(x: Tensor) -> Tensor:
    return x**2 * torch.cos(math.pi * x)


class AllenCahn(Problem):
    """Forward Allen-Cahn problem with named terms ``pde``, ``ic`` and (without the periodic
    embedding) ``bc``.

    Inputs are ``(t, x)``. With ``periodic_embedding`` the network sees
    ``(2t - 1, cos(pi x), sin(pi x))``, which is exactly periodic in x (Dong & Ni 2021, "A method
    for representing periodic functions and enforcing exactly periodic boundary conditions with
    deep neural networks"), so the ``bc`` term disappears. ``causal_eps > 0`` weights the residual
    of time slab i by ``exp(-eps * sum_{j<i} L_j)`` (Wang, Sankaran & Perdikaris 2022,
    "Respecting causality is all you need for training PINNs").
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
        periodic_embedding: bool = True,
        causal_eps: float = 0.0,
        causal_chunks: int = 32,
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
        self.d, self.k = float(d), float(k)
        self.periodic_embedding = periodic_embedding
        self.causal_eps, self.causal_chunks = float(causal_eps), causal_chunks
        self.dtype, self.device = dtype, torch.device(device)
        self.n_features = 3 if periodic_embedding else 2
        self.reference = load_or_build_allen_cahn(
            Path(data_dir) / f"allen_cahn_d{self.d:g}_k{self.k:g}.h5", d=self.d, k=self.k
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

    def u(self, model: nn.Module, x: Tensor) -> Tensor:
        return model(self.features(x))[:, 0]

    def residual(self, model: nn.Module, x: Tensor, d: Tensor | float | None = None) -> Tensor:
        """Signed residual ``u_t - d u_xx + k (u^3 - u)`` by nested autograd."""
        x = x.detach().requires_grad_(True)
        u = self.u(model, x)
        du = gradient(u, x)
        u_xx = gradient(du[:, 1], x)[:, 1]
        d = self.d if d is None else d
        return du[:, 0] - d * u_xx + self.k * (u**3 - u)

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
        return (torch.exp(-self.causal_eps * past) * slab).mean()

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
