"""TensorBoard scalars, text and figures for one run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402


class RunLogger:
    """Thin wrapper over ``SummaryWriter`` that accepts dicts and closes figures after use."""

    def __init__(self, log_dir: str | Path):
        self.writer = SummaryWriter(log_dir=str(log_dir))

    def scalars(self, values: dict[str, float], step: int, prefix: str = "") -> None:
        for name, value in values.items():
            self.writer.add_scalar(f"{prefix}{name}", float(value), step)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        self.writer.add_text(tag, text, step)

    def figure(self, tag: str, fig, step: int) -> None:
        self.writer.add_figure(tag, fig, step, close=True)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def cosine_heatmap(cosines: np.ndarray, names: list[str]):
    """Heat map of the pairwise cosine similarities between term gradients."""
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 1.1 * len(names) + 1.5))
    im = ax.imshow(cosines, vmin=-1, vmax=1, cmap="RdBu")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{cosines[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    return fig


def points_figure(points: np.ndarray, labels: tuple[str, str]):
    """Scatter of the current collocation points (shows where RAR refines)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(points[:, 0], points[:, 1], s=1)
    ax.set(xlabel=labels[0], ylabel=labels[1], title=f"{len(points)} collocation points")
    fig.tight_layout()
    return fig
