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


def lineage_plot(events: list[dict], path: str, title: str = "", evaluations: int | None = None) -> str:
    """The family tree: one lane per member over evaluations, forks and merges as edges coloured by fitness.

    Members are thick grey lanes from birth to their end (replaced, or the run's end). A fork is a
    short thin lane just above its parent's, coloured by its fitness, branching off at the
    generation and merging back into the parent with a line as thick as its NES weight;
    replacements are dashed.
    """
    last = evaluations or max([e.get("evaluations", 0) for e in events] + [1])
    span = 0.025 * last  # drawn length of a fork's life (forks train between two evaluations)
    lanes: dict[int, float] = {}
    segments = []  # (x0, y0, x1, y1, fitness or None, width, style)
    ends: dict[int, float] = {}
    born: dict[int, float] = {}
    fits = []
    for e in events:
        kind, t = e["event"], e.get("evaluations", 0)
        if kind == "birth":
            lanes[e["id"]], born[e["id"]] = float(len(lanes)), t
        elif kind == "fork":
            n = sum(1 for f in lanes if 0 < lanes[f] - lanes[e["parent"]] < 1 and born[f] == t)
            lanes[e["id"]], born[e["id"]] = lanes[e["parent"]] + 0.15 * (n + 1), t
            segments.append((t, lanes[e["parent"]], t, lanes[e["id"]], None, 0.8, "-"))
        elif kind == "merge":
            for f, w, fit in zip(e["forks"], e["weights"], e["fork_fitness"]):
                fits.append(fit)
                segments.append((t, lanes[f], t + span, lanes[f], fit, 1.5, "-"))
                if w > 0:
                    segments.append((t + span, lanes[f], t + 1.3 * span, lanes[e["id"]], fit, 0.5 + 4 * w, "-"))
        elif kind == "replace":
            ends[e["replaced"]] = t
            lanes[e["id"]], born[e["id"]] = lanes[e["replaced"]], t
            segments.append((t, lanes[e["parent"]], t, lanes[e["id"]], None, 1.0, "--"))
    fits = [v for v in fits if np.isfinite(v)]
    norm = plt.Normalize(min(fits), max(fits)) if fits else plt.Normalize(0, 1)
    cmap = plt.get_cmap("viridis")
    members = [m for m, lane in lanes.items() if float(lane).is_integer()]
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.45 * max(1, len({lanes[m] for m in members}))))
    for m in members:
        ax.plot([born[m], ends.get(m, last)], [lanes[m], lanes[m]], color="0.55", lw=3, solid_capstyle="butt")
        ax.annotate(f"{m}", (born[m], lanes[m]), xytext=(-4, 0), textcoords="offset points", ha="right",
                    va="center", fontsize=7)
    for x0, y0, x1, y1, fit, width, style in segments:
        colour = cmap(norm(fit)) if fit is not None and np.isfinite(fit) else "0.3"
        ax.plot([x0, x1], [y0, y1], color=colour, lw=width, ls=style)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("member")
    ax.set_yticks([])
    ax.set_title(title or "lineage")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="fork fitness (-holdout error)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
