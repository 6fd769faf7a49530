"""Plots of a run, drawn with matplotlib into files (no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def convergence_plot(history: pd.DataFrame, optimum: float | None, path: str, title: str = "",
                     sign: float = 1.0) -> str:
    """Best value so far against evaluations (and simple regret on a log scale when the optimum is known).

    ``optimum`` is in the maximization convention; ``sign`` is -1 when the history's y are minimized.
    """
    n = np.arange(1, len(history) + 1)
    panels = 2 if optimum is not None else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    ax = axes[0, 0]
    ok = history["status"] == "ok"
    for source, group in history[ok].groupby("source"):
        ax.scatter(group["evaluation"] + 1, group["y"], s=6, alpha=0.5, label=source)
    ax.plot(n, history["best_y"], color="black", lw=1.5, label="best so far")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("y")
    ax.legend(fontsize=7)
    if optimum is not None:
        regret = np.maximum(optimum - sign * history["best_y"].to_numpy(), 1e-12)
        axes[0, 1].semilogy(n, regret, color="tab:red")
        axes[0, 1].set_xlabel("evaluations")
        axes[0, 1].set_ylabel("simple regret")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
