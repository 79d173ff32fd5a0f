"""Figures of the studies (matplotlib on Agg; the library never plots)."""

from __future__ import annotations

import os
import pathlib

import numpy as np


def pyplot():
    """matplotlib's pyplot on the Agg backend (the core never imports plotting)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | os.PathLike, dpi: int = 110) -> str:
    """Saves ``fig`` to ``path`` (creating its folder), closes it and returns the file name."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path.name


def plot_curves(
    curves: dict[str, np.ndarray],
    path: str | os.PathLike,
    *,
    ylabel: str,
    title: str,
    xlabel: str = "epoch",
) -> None:
    """One line per name: the mean over seeds (axis 0) with a band of +-1 std and min/max dots.

    Args:
      curves: name -> array ``(seeds, epochs)``.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for name, v in curves.items():
        v = np.asarray(v, np.float64)
        x = np.arange(1, v.shape[1] + 1)
        mean, std = v.mean(0), v.std(0)
        (line,) = ax.plot(x, mean, marker="o", label=f"{name} (n={v.shape[0]})")
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.plot(x, v.min(0), ":", color=line.get_color(), lw=0.8)
        ax.plot(x, v.max(0), ":", color=line.get_color(), lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save(fig, path, dpi=120)
