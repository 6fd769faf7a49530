"""Plots of a run, drawn with matplotlib into files (no display needed)."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def convergence_plot(history: pd.DataFrame, optimum: float | None, path: str, title: str = "",
                     sign: float = 1.0) -> str:
    """``convergence_figure`` saved to ``path`` (returned)."""
    return _saved(convergence_figure(history, optimum, title, sign), path)


def _saved(fig: Any, path: str) -> str:
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def convergence_figure(history: pd.DataFrame, optimum: float | None, title: str = "", sign: float = 1.0) -> Any:
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
    return fig


def lineage_plot(events: list[dict], path: str, title: str = "", evaluations: int | None = None) -> str:
    """``lineage_figure`` saved to ``path`` (returned)."""
    return _saved(lineage_figure(events, title, evaluations), path)


def lineage_figure(events: list[dict], title: str = "", evaluations: int | None = None) -> Any:
    """The family tree: one lane per member over evaluations, forks and merges as edges coloured by fitness.

    Members are thick grey lanes from birth to their end (replaced, or the run's end), labelled ``m3``, or
    ``m9 copy of m2`` where a copy replaced a weak member (dashed). A fork is a short thin lane just above
    its parent's, coloured by its fitness, branching off at the generation and merging back into the parent
    with a line as thick as its NES weight, labelled with the parent's generation and that weight (``g2 w0.73``).
    Faint vertical lines mark the evaluations where members were merged.
    """
    last = evaluations or max([e.get("evaluations", 0) for e in events] + [1])
    tree = _Tree(events, span=0.025 * last)  # a fork's drawn life (forks train between two evaluations)
    lanes, born, ends, copies, segments = tree.lanes, tree.born, tree.ends, tree.copies, tree.segments
    norm = plt.Normalize(0, 1)
    cmap = plt.get_cmap("viridis")
    members = [m for m, lane in lanes.items() if float(lane).is_integer()]
    fig, ax = plt.subplots(figsize=(10, 1.5 + 0.45 * max(1, len({lanes[m] for m in members}))))
    for m in members:
        ax.plot([born[m], ends.get(m, last)], [lanes[m], lanes[m]], color="0.55", lw=3, solid_capstyle="butt")
        if m in copies:
            ax.annotate(f"m{m} copy of m{copies[m]}", (born[m], lanes[m]), xytext=(3, -4), textcoords="offset points",
                        ha="left", va="top", fontsize=7)
        else:
            ax.annotate(f"{tree.prefix.get(m, 'm')}{m}", (born[m], lanes[m]), xytext=(-4, 0),
                        textcoords="offset points", ha="right", va="center", fontsize=8)
    for x0, y0, x1, y1, fit, width, style in segments:
        colour = cmap(norm(fit)) if fit is not None and np.isfinite(fit) else "0.3"
        ax.plot([x0, x1], [y0, y1], color=colour, lw=width, ls=style)
    for x, y, text in tree.labels:
        ax.annotate(text, (x, y), xytext=(1, 0), textcoords="offset points", ha="left", va="center", fontsize=6)
    ax.set_xlabel("evaluations")
    ax.set_ylabel("member")
    ax.set_yticks([])
    for x in tree.merged_at:
        ax.axvline(x, color="0.88", lw=0.8, zorder=0)
    ax.set_title(title or "lineage")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="fork fitness (worst to best of its merge)")
    fig.tight_layout()
    return fig


class _Tree:
    """The lineage laid out for drawing: a lane (height) per member and fork, and the segments between them."""

    def __init__(self, events: list[dict], span: float):
        self.lanes: dict[int, float] = {}
        self.born: dict[int, float] = {}
        self.ends: dict[int, float] = {}
        self.copies: dict[int, int] = {}  # copy -> the member it copies
        self.segments: list[tuple] = []  # (x0, y0, x1, y1, fitness or None, width, style)
        self.labels: list[tuple[float, float, str]] = []  # (x, y, text) of merged forks
        self.fits: list[float] = []
        self.prefix: dict[int, str] = {}  # member -> "gp" for Gaussian-process members
        self.merged_at: set[float] = set()
        for e in events:
            getattr(self, f"_{e['event']}", lambda e, t, span: None)(e, e.get("evaluations", 0), span)

    def _birth(self, e: dict, t: float, span: float) -> None:
        self.lanes[e["id"]], self.born[e["id"]] = float(len(self.lanes)), t
        if e.get("kind") == "gp":
            self.prefix[e["id"]] = "gp"

    def _fork(self, e: dict, t: float, span: float) -> None:
        lanes, parent = self.lanes, self.lanes[e["parent"]]
        n = sum(1 for f in lanes if 0 < lanes[f] - parent < 1 and self.born[f] == t)
        lanes[e["id"]], self.born[e["id"]] = parent + 0.15 * (n + 1), t
        self.segments.append((t, parent, t, lanes[e["id"]], None, 0.8, "-"))

    def _merge(self, e: dict, t: float, span: float) -> None:
        self.merged_at.add(t)
        lanes = self.lanes
        # coloured by the fork's place between the merge's worst and best (networks and Gaussian-process
        # members score on different scales)
        scores = np.array(e["fork_fitness"], dtype=float)
        finite = scores[np.isfinite(scores)]
        low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        for f, w, raw in zip(e["forks"], e["weights"], scores):
            fit = float((raw - low) / (high - low)) if np.isfinite(raw) and high > low else (1.0 if np.isfinite(raw)
                                                                                             else float("nan"))
            self.fits.append(fit)
            self.segments.append((t, lanes[f], t + span, lanes[f], fit, 1.5, "-"))
            if w > 0:
                self.segments.append((t + span, lanes[f], t + 1.3 * span, lanes[e["id"]], fit, 0.5 + 4 * w, "-"))
                self.labels.append((t + 1.4 * span, lanes[f], f"g{e['generation']} w{w:.2f}"))

    def _replace(self, e: dict, t: float, span: float) -> None:
        self.ends[e["replaced"]] = t
        self.lanes[e["id"]], self.born[e["id"]] = self.lanes[e["replaced"]], t
        self.copies[e["id"]] = e["parent"]
        self.segments.append((t, self.lanes[e["parent"]], t, self.lanes[e["id"]], None, 1.0, "--"))
