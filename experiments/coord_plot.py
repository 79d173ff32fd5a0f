"""Plots of ``jinit.coord_check`` results (TP-V Figure 5): coordinate change vs width per layer."""

from __future__ import annotations

import pathlib

import numpy as np


def save_coord_check(results: dict, path, steps: tuple[int, ...] | None = None) -> str:
    """One panel per parametrization (``{name: jinit.CoordCheck}``): ``mean|h_t - h_0|`` at the
    last step against width, one line per layer, log-log, with the fitted slope in the legend.

    Returns the file name written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, (name, r) in zip(axes[0], results.items(), strict=True):
        for i, layer in enumerate(r.layers):
            y = r.change[:, i, :, -1].mean(-1)
            ax.plot(r.widths, y, "o-", ms=3, label=f"{layer} ({r.slope_change[i]:+.2f})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_ylabel(f"mean |h_t - h_0| after {r.change.shape[-1] - 1} steps")
        ax.set_title(f"{name}: coordinate check")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2, title="layer (log-log slope)", title_fontsize=6)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def slopes_table(results: dict) -> list[str]:
    """Markdown rows ``| layer | slope per parametrization |`` (for docs pages)."""
    names = list(results)
    layers = results[names[0]].layers
    rows = ["| layer | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, layer in enumerate(layers):
        vals = [f"{float(np.asarray(results[n].slope_change)[i]):+.2f}" for n in names]
        rows.append(f"| {layer} | " + " | ".join(vals) + " |")
    return rows
