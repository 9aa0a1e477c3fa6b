"""The interface every PDE problem implements; the training loop knows nothing else about PDEs."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn


@dataclass
class Evaluation:
    """Errors against the reference, plus what is needed to plot and store them.

    ``coords`` are the evaluation points (m, d) and ``prediction``/``reference`` map each output
    field to an array shaped like ``grid_shape`` (or (m,) for scattered points).
    """

    metrics: dict[str, float]
    coords: np.ndarray
    prediction: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]
    grid_shape: tuple[int, ...] | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def rel_l2(pred: np.ndarray, ref: np.ndarray) -> float:
    """Relative L2 error ||pred - ref|| / ||ref|| over all evaluation points."""
    return float(np.linalg.norm(pred - ref) / np.linalg.norm(ref))


class Problem(ABC):
    """A PDE problem: domain, named loss terms, pointwise residual, evaluation.

    ``unknowns`` maps the name of each unknown physical parameter (inverse problems) to its
    anchor module; it is empty for forward problems.
    """

    n_features: int  # input size of the network (after the problem's feature map)
    out_dim: int
    fields: tuple[str, ...]
    residual_terms: tuple[str, ...]  # names of the loss terms that are PDE residuals
    point_labels: tuple[str, str]  # axis names of the first two input coordinates, for plots

    def __init__(self) -> None:
        self.unknowns: nn.ModuleDict = nn.ModuleDict()

    @abstractmethod
    def sample_domain(self, n: int, generator: torch.Generator) -> Tensor:
        """n uniformly distributed interior points, (n, d)."""

    @abstractmethod
    def losses(self, model: nn.Module, x: Tensor) -> dict[str, Tensor]:
        """Named scalar loss terms for collocation points ``x``; residual terms come first."""

    @abstractmethod
    def pointwise_residual(self, model: nn.Module, x: Tensor) -> Tensor:
        """|r(x)| per point, (n,), with the current estimates of any unknowns."""

    @abstractmethod
    def evaluate(self, model: nn.Module) -> Evaluation:
        """Errors against the reference solution on the full evaluation set."""

    @abstractmethod
    def figure(self, evaluation: Evaluation):
        """A matplotlib figure of prediction, reference and error."""

    true_unknowns: dict[str, float] = {}  # true values of the unknowns, for the metrics

    def unknown_values(self) -> dict[str, float]:
        return {name: float(anchor.value().detach()) for name, anchor in self.unknowns.items()}

    def unknown_metrics(self) -> dict[str, float]:
        """``<name>_true``, ``<name>_pred`` and ``<name>_rel_error`` for each unknown."""
        out = {}
        for name, pred in self.unknown_values().items():
            true = self.true_unknowns[name]
            out |= {
                f"{name}_true": true,
                f"{name}_pred": pred,
                f"{name}_rel_error": abs(pred - true) / abs(true),
            }
        return out

    def artifacts(self) -> dict[str, np.ndarray]:
        """Arrays to store with the prediction (e.g. sensor positions and noisy values)."""
        return {}

    def to(self, device: torch.device) -> Problem:
        """Move the problem's tensors; problems holding tensors override this."""
        self.unknowns.to(device)
        return self
