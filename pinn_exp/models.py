"""Networks: SIREN (Sitzmann et al. 2020) and a tanh MLP baseline, float64 by default.

Models are plain ``nn.Module``s mapping problem features (already scaled to [-1, 1] by the
problem) to outputs. Sizes come from the problem; everything random comes from the generator.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def _check_positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


class SineLayer(nn.Module):
    """``sin(omega_0 (W x + b))`` with the SIREN initialisation.

    Sitzmann et al. 2020, "Implicit Neural Representations with Periodic Activation Functions":
    first layer ``W ~ U(-1/n, 1/n)``, later layers ``W ~ U(-sqrt(6/n)/omega_0, sqrt(6/n)/omega_0)``,
    so that pre-activations stay arcsine-distributed through depth.
    """

    def __init__(self, n_in: int, n_out: int, omega_0: float, first: bool, generator, dtype):
        super().__init__()
        self.omega_0 = omega_0
        self.linear = nn.Linear(n_in, n_out, dtype=dtype)
        bound = 1.0 / n_in if first else math.sqrt(6.0 / n_in) / omega_0
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound, generator=generator)
            b = 1.0 / math.sqrt(n_in)
            self.linear.bias.uniform_(-b, b, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.omega_0 * self.linear(x))


class SIREN(nn.Module):
    """SIREN with ``depth`` sine layers of ``width`` units and a linear head.

    ``omega_0`` scales the first layer (30 in the paper); ``hidden_omega_0`` the others.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        generator: torch.Generator,
        width: int = 64,
        depth: int = 4,
        omega_0: float = 30.0,
        hidden_omega_0: float = 30.0,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        for name, value in [
            ("in_dim", in_dim),
            ("out_dim", out_dim),
            ("width", width),
            ("depth", depth),
            ("omega_0", omega_0),
            ("hidden_omega_0", hidden_omega_0),
        ]:
            _check_positive(name, value)
        self._args = dict(width=width, depth=depth, omega_0=omega_0, hidden_omega_0=hidden_omega_0)
        layers = [SineLayer(in_dim, width, omega_0, True, generator, dtype)]
        layers += [
            SineLayer(width, width, hidden_omega_0, False, generator, dtype)
            for _ in range(depth - 1)
        ]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_dim, dtype=dtype)
        bound = math.sqrt(6.0 / width) / hidden_omega_0
        with torch.no_grad():
            self.head.weight.uniform_(-bound, bound, generator=generator)
            self.head.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._args.items())


class MLP(nn.Module):
    """Fully connected tanh network with Xavier-normal weights and zero biases: the baseline
    of Raissi, Perdikaris & Karniadakis 2019 ("Physics-informed neural networks")."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        generator: torch.Generator,
        width: int = 64,
        depth: int = 4,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        for name, value in [
            ("in_dim", in_dim),
            ("out_dim", out_dim),
            ("width", width),
            ("depth", depth),
        ]:
            _check_positive(name, value)
        self._args = dict(width=width, depth=depth)
        sizes = [in_dim] + [width] * depth
        self.hidden = nn.ModuleList(
            nn.Linear(a, b, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])
        )
        self.head = nn.Linear(width, out_dim, dtype=dtype)
        with torch.no_grad():
            for layer in [*self.hidden, self.head]:
                std = math.sqrt(2.0 / (layer.in_features + layer.out_features))
                layer.weight.normal_(0.0, std, generator=generator)
                layer.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.hidden:
            x = torch.tanh(layer(x))
        return self.head(x)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self._args.items())


def gradient(y: Tensor, x: Tensor) -> Tensor:
    """d y / d x for a per-sample scalar ``y`` (n,) and inputs ``x`` (n, d), keeping the graph
    so that the result can be differentiated again and trained through."""
    (g,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=True)
    return g
