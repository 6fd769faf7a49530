"""Plots of results for a notebook or a report, as ``optuna.visualization`` users expect: each returns a
matplotlib Figure (shown by a notebook, saved with ``fig.savefig``)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .plots import convergence_figure, lineage_figure, plt


def _history(result: Any) -> Any:
    """The history of a Result or an Optimizer."""
    return result.history() if callable(result.history) else result.history


def _lineage(result: Any) -> list[dict]:
    return list(result.events if hasattr(result, "events") else result.lineage)


def plot_convergence(result: Any, optimum: float | None = None, title: str = "") -> Any:
    """Every evaluation by its source and the best so far against evaluations, for a Result (or an Optimizer);
    with ``optimum`` (the best value there is, in your direction) also the regret on a log scale."""
    history = _history(result)
    sign = -1.0 if _minimized(result) else 1.0
    return convergence_figure(history, None if optimum is None else sign * optimum, title, sign)


def plot_lineage(result: Any, title: str = "") -> Any:
    """The population's family tree: members over evaluations, their forks and the NES-weighted merges, coloured
    by fitness (a run of a strategy without a population has no tree: a ValueError says so)."""
    events = _lineage(result)
    if not any(e.get("event") == "birth" for e in events):
        raise ValueError("plot_lineage: this run has no population (no member was born); strategies nes, sgd, es "
                         "and nes_es have one")
    return lineage_figure(events, title, len(_history(result)))


def plot_comparison(results: Mapping[str, Any | Sequence[Any]], optimum: float | None = None,
                    title: str = "") -> Any:
    """The best value so far (or, given ``optimum``, the regret on a log scale) against evaluations for several
    runs: ``{"nes": [r0, r1, ...], "sgd": [...]}`` draws each name's median over its runs and the band between
    their quartiles (one run per name is drawn alone)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, runs in results.items():
        runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
        curves = [_history(r)["best_y"].to_numpy(dtype=float) for r in runs]
        sign = -1.0 if _minimized(runs[0]) else 1.0
        n = min(len(c) for c in curves)
        curves = np.stack([c[:n] for c in curves])
        if optimum is not None:
            curves = np.maximum(sign * (optimum - curves), 1e-12)
        steps = np.arange(1, n + 1)
        median = np.median(curves, axis=0)
        (line,) = ax.plot(steps, median, label=f"{name} ({len(runs)} run{'s' if len(runs) > 1 else ''})")
        if len(runs) > 1:
            lo, hi = np.percentile(curves, [25, 75], axis=0)
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.2)
    if optimum is not None:
        ax.set_yscale("log")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("regret" if optimum is not None else "best so far")
    ax.set_title(title or "comparison")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _minimized(result: Any) -> bool:
    """Whether the run (a Result or an Optimizer) minimized."""
    return getattr(result, "direction", "maximize") == "minimize"
