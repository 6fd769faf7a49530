"""The sweep summary: what a Hydra multirun of strategies x problems x seeds found, side by side.

Every job leaves ``summary.json`` (who it was, its end) and ``metrics.jsonl`` (its numbers after every
round) in its run directory; this module reads them back from a sweep directory and makes the table
(strategy x problem: median regret and its interquartile range at fixed evaluation counts, the
evaluations needed to reach a target regret, wall time) and the plot of regret against evaluations
with quartile bands. The app's ``Sweep`` callback calls it when a multirun ends; ``python -m
nes_ensemble.app.sweep FOLDER`` summarizes a folder by hand; ``experiments/compare.py`` uses it across sweeps.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys

import numpy as np
import pandas as pd

# the simple regret counted as "reached", per problem (its dimension stripped from the name)
TARGETS = {"hartmann6": 0.01, "noisy_hartmann6": 0.05, "branin": 0.01, "noisy_branin": 0.05, "ackley": 1.0,
           "levy": 1.0, "rosenbrock": 10.0, "rastrigin": 5.0, "styblinski_tang": 10.0}
CHECKPOINTS = (30, 50, 100, 150, 300, 1000)  # evaluation counts shown when below the budget (and the budget)


def target(problem: str) -> float:
    """The regret counted as reached for a problem name such as ackley10 or hartmann6."""
    return TARGETS.get(problem, TARGETS.get(problem.rstrip("0123456789"), 0.01))


def read_jobs(folder: str) -> pd.DataFrame:
    """One row per finished job under ``folder`` (searched at any depth): strategy, problem, seed, budget,
    seconds, and its curve (``steps``: evaluations; ``value``: the regret, or the best value where the problem's
    optimum is unknown; ``clock``: seconds since the start)."""
    rows = []
    for path in sorted(glob.glob(os.path.join(glob.escape(folder), "**", "summary.json"), recursive=True)):
        job = os.path.dirname(path)
        try:
            with open(path) as f:
                summary = json.load(f)
            with open(os.path.join(job, "metrics.jsonl")) as f:
                rounds = [r for r in map(_row, f) if r is not None]
        except (OSError, ValueError):
            continue
        key = "regret" if "regret" in summary else "best_y"
        last = {r["evaluations"]: r for r in rounds if key in r}  # a resumed run repeats no step, but keep the last
        steps = np.array(sorted(last), dtype=float)
        rows.append({"job": job, "strategy": summary["strategy"], "problem": summary["problem"],
                     "seed": summary["seed"], "budget": summary["budget"], "seconds": summary["seconds"],
                     "measure": key, "steps": steps, "value": np.array([last[s][key] for s in steps]),
                     "clock": np.array([last[s].get("elapsed_seconds", np.nan) for s in steps])})
    return pd.DataFrame(rows)


def _row(line: str) -> dict | None:
    """One round of metrics.jsonl (None for a line cut short by a kill)."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) and "evaluations" in row else None


def value_at(steps: np.ndarray, values: np.ndarray, n: int) -> float:
    """The value after n evaluations (the last one logged at or before n)."""
    i = np.searchsorted(steps, n, side="right") - 1
    return float(values[i]) if i >= 0 else np.nan


def table(jobs: pd.DataFrame, checkpoints: list[int] | None = None) -> pd.DataFrame:
    """Strategy x problem at each evaluation count: median and quartiles over seeds of the regret (or best value),
    the evaluations to reach the problem's target regret (median of the seeds that did, and how many), seconds."""
    rows = []
    for (problem, strategy), g in jobs.groupby(["problem", "strategy"], sort=True):
        budget = int(g.budget.max())
        counts = checkpoints or [c for c in CHECKPOINTS if c < budget] + [budget]
        regret = g.measure.iloc[0] == "regret"
        goal = target(problem)
        reach = np.array([s[np.argmax(v <= goal)] if regret and (v <= goal).any() else np.nan
                          for s, v in zip(g.steps, g.value)])
        reached = np.isfinite(reach)
        to_target = (f"{np.median(reach[reached]):.0f} ({reached.sum()}/{len(g)})" if reached.any()
                     else f"- (0/{len(g)})")
        for n in counts:
            if n > budget:
                continue
            vals = np.array([value_at(s, v, n) for s, v in zip(g.steps, g.value)])
            if not np.isfinite(vals).any():
                continue
            q1, med, q3 = np.nanpercentile(vals, [25, 50, 75])
            row = {"problem": problem, "strategy": strategy, "evaluations": n, "seeds": len(g),
                   "median regret" if regret else "median best": med, "IQR": f"{q1:.3g} - {q3:.3g}"}
            if regret:  # (a problem whose optimum is unknown has no target)
                row.update({"evals to target (reached)": to_target, "target": goal})
            rows.append({**row, "median seconds": float(np.median(g.seconds))})
    return pd.DataFrame(rows)


def plot(jobs: pd.DataFrame, path: str) -> str:
    """Regret (or best value) against evaluations: per problem a panel, per strategy the median and quartile band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problems = sorted(jobs.problem.unique())
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.6), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        sub = jobs[jobs.problem == problem]
        for strategy, g in sub.groupby("strategy", sort=True):
            start = int(min(s[0] for s in g.steps if len(s)))
            grid = np.unique(np.linspace(start, int(g.budget.max()), 120).astype(int))
            curves = np.array([[value_at(s, v, n) for n in grid] for s, v in zip(g.steps, g.value)])
            q1, med, q3 = np.nanpercentile(curves, [25, 50, 75], axis=0)
            line, = ax.plot(grid, med, label=f"{strategy} ({len(g)} seeds)")
            ax.fill_between(grid, q1, q3, color=line.get_color(), alpha=0.2)
        if (sub.measure == "regret").all():
            ax.set_yscale("log")
        ax.set_title(problem)
        ax.set_xlabel("evaluations")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("simple regret" if (jobs.measure == "regret").all() else "best value")
    axes[0][0].text(0.01, 0.01, "median, quartile band", transform=axes[0][0].transAxes, fontsize=7, va="bottom")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def sweep_id(folder: str) -> str:
    """The tag that selects a sweep's jobs and its summary run in MLflow (``tags.sweep_id = '...'``): the sweep
    folder's date and time (Hydra's multirun/DATE/TIME) and a short hash of its full path, so no two differ."""
    folder = os.path.abspath(folder)
    stamp = "_".join(os.path.normpath(folder).split(os.sep)[-2:])
    return f"{stamp}-{hashlib.sha1(folder.encode()).hexdigest()[:6]}"


def markdown(df: pd.DataFrame) -> str:
    """The table as Markdown (what the summary run's description and summary.md show)."""
    return df.to_markdown(index=False, floatfmt=".4g")


def summarize(folder: str, out_dir: str, checkpoints: list[int] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The summary of the jobs under ``folder``: ``summary.md``, ``summary.csv`` and ``summary.png`` written into
    ``out_dir``; returns the table and the three paths (an empty table and no files when no job finished)."""
    jobs = read_jobs(folder)
    if jobs.empty:
        return pd.DataFrame(), []
    df = table(jobs, checkpoints)
    os.makedirs(out_dir, exist_ok=True)
    md, csv = os.path.join(out_dir, "summary.md"), os.path.join(out_dir, "summary.csv")
    df.to_csv(csv, index=False)
    with open(md, "w") as f:
        f.write(markdown(df) + "\n")
    return df, [md, csv, plot(jobs, os.path.join(out_dir, "summary.png"))]


def record(df: pd.DataFrame, paths: list[str], folder: str, uri: str, experiment: str, text: str = "") -> str | None:
    """The summary as a run of ``experiment`` in the MLflow store ``uri``: ``text`` (else the table) as its
    description, the medians as metrics at each evaluation count, the files as artifacts. Returns its id (kept in
    ``folder``/mlflow_run.json)."""
    from .tracking import Tracker, recorded_run

    measure = "median regret" if "median regret" in df else "median best"
    strategies, problems = ",".join(sorted(df.strategy.unique())), ",".join(sorted(df.problem.unique()))
    ident = sweep_id(folder)
    tracker = Tracker(uri, experiment, f"sweep {ident}: {strategies} on {problems}"[:120],
                      {"strategies": strategies, "problems": problems, "sweep_dir": folder},
                      {"kind": "sweep_summary", "sweep_dir": folder, "sweep_id": ident,
                       "mlflow.note.content": (text or markdown(df))[:5000]}, run_dir=folder, lineage=False)
    key = measure.replace(" ", "_")
    for n, rows in df.groupby("evaluations"):
        tracker.log_metrics({f"{key}/{s}/{p}": v for s, p, v in zip(rows.strategy, rows.problem, rows[measure])},
                            step=int(n))
    tracker.log_artifacts(paths)
    tracker.finish()
    return recorded_run(folder)


def main(argv: list[str] | None = None) -> int:
    """``python -m nes_ensemble.app.sweep FOLDER``: the summary of the finished jobs under FOLDER (a sweep that was
    stopped, or several sweeps), printed and written into FOLDER."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m nes_ensemble.app.sweep", description=main.__doc__)
    parser.add_argument("folder", help="a sweep folder (outputs/multirun/DATE/TIME), or a folder above several")
    folder = os.path.abspath(parser.parse_args(argv).folder)
    df, paths = summarize(folder, folder)
    if df.empty:
        print(f"nes_ensemble: no finished job under {folder}", file=sys.stderr)
        return 1
    print(markdown(df) + "\nsaved in " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
