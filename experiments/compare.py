"""Compare strategies across problems and seeds: Hydra sweeps in, MLflow runs out, a table and a plot.

    python experiments/compare.py --plan 'sgd,nes:1000:10' 'es,nes_es:300:5' \\
        --problems hartmann6,hartmann6_noisy,ackley,levy --name nes_vs_sgd

Each ``--plan`` entry is ``strategies:budget:seeds`` and becomes one Hydra sweep
(``python -m nes_ensemble -m hydra/launcher=joblib ...``): every job is one MLflow run in the
experiment ``--name``. The report step then reads those runs back from MLflow and writes, under
experiments/results/:

* ``NAME.md`` / ``.csv``: median simple regret (and interquartile range) at fixed evaluation counts,
  the evaluations needed to reach a target regret (median over the seeds that reached it, and how
  many did), and the median wall time of a run;
* ``NAME.png``: regret against evaluations, median and quartile band, one panel per problem.

Both are also logged as artifacts of a summary run in the same experiment. ``--report-only
SWEEP_PREFIX`` re-reads finished sweeps without running anything.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from common import RESULTS, save_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# regret counted as "reached" per problem (simple regret on the noise-free function)
TARGETS = {"hartmann6": 0.01, "noisy_hartmann6": 0.05, "branin": 0.01, "noisy_branin": 0.05, "ackley": 1.0,
           "levy": 1.0, "rosenbrock": 10.0, "rastrigin": 5.0, "styblinski_tang": 10.0}


def target(problem: str) -> float:
    """The regret counted as reached for a problem name such as ackley10 (its dimension stripped)."""
    return TARGETS.get(problem, TARGETS.get(problem.rstrip("0123456789"), 0.01))


def launch(strategies: str, budget: int, seeds: int, problems: str, name: str, sweep_dir: str, jobs: int) -> None:
    """One Hydra multirun over strategies x problems x seeds, run in parallel by the joblib launcher."""
    cmd = [sys.executable, "-m", "nes_ensemble", "-m", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}",
           f"hydra.sweep.dir={sweep_dir}", f"strategy={strategies}", f"problem={problems}",
           f"seed=range(0,{seeds})", f"budget={budget}", f"tracking.experiment={name}", "progress=false"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def read_runs(name: str, sweep_prefix: str) -> pd.DataFrame:
    """Every finished run of the sweeps under ``sweep_prefix``: one row per run with its regret curve."""
    from mlflow.tracking import MlflowClient

    from nes_ensemble.tracking import default_uri

    client = MlflowClient(tracking_uri=default_uri(ROOT))
    exp = client.get_experiment_by_name(name)
    if exp is None:
        raise SystemExit(f"no MLflow experiment {name!r} in {default_uri(ROOT)}")
    runs = client.search_runs([exp.experiment_id], f"tags.sweep_dir LIKE '{sweep_prefix}%'", max_results=50000)
    rows = []
    for run in runs:
        if run.info.status != "FINISHED" or "seed" not in run.data.params:  # unfinished, or a summary run
            continue
        hist = client.get_metric_history(run.info.run_id, "regret")
        steps = np.array([m.step for m in hist])
        order = np.argsort(steps, kind="stable")
        clock = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "elapsed_seconds"))
        rows.append({"run_id": run.info.run_id, "strategy": run.data.tags.get("strategy"),
                     "problem": run.data.tags.get("problem"), "seed": int(run.data.params["seed"]),
                     "budget": int(run.data.params["budget"]), "seconds": run.data.metrics.get("seconds", np.nan),
                     "steps": steps[order], "regret": np.array([m.value for m in hist])[order],
                     "clock": np.array(clock).reshape(-1, 2)})
    if not rows:
        raise SystemExit(f"no finished runs under {sweep_prefix!r} in experiment {name!r}")
    return pd.DataFrame(rows)


def regret_at(steps: np.ndarray, regret: np.ndarray, n: int) -> float:
    """The best-so-far regret after n evaluations (the last value logged at or before n)."""
    i = np.searchsorted(steps, n, side="right") - 1
    return float(regret[i]) if i >= 0 else np.nan


def table(runs: pd.DataFrame, checkpoints: list[int]) -> pd.DataFrame:
    rows = []
    for (problem, strategy), g in runs.groupby(["problem", "strategy"], sort=True):
        goal = target(problem)
        reach = [s[np.argmax(r <= goal)] if (r <= goal).any() else np.nan for s, r in zip(g.steps, g.regret)]
        reached = np.isfinite(reach)
        for n in checkpoints:
            if n > g.budget.max():
                continue
            vals = np.array([regret_at(s, r, n) for s, r in zip(g.steps, g.regret)])
            q1, med, q3 = np.nanpercentile(vals, [25, 50, 75])
            rows.append({"problem": problem, "strategy": strategy, "evaluations": n, "seeds": len(g),
                         "median regret": med, "IQR": f"{q1:.3g} - {q3:.3g}",
                         "evals to target (reached)": (
                             f"{np.median(np.array(reach)[reached]):.0f} ({reached.sum()}/{len(g)})"
                             if reached.any() else f"- (0/{len(g)})"),
                         "target": goal, "median seconds": float(np.median(g.seconds)),
                         "ms per eval, first 100": 1000 * _slope(g.clock, 0, 100),
                         "ms per eval, last 100": 1000 * _slope(g.clock, g.budget.max() - 100, g.budget.max())})
    return pd.DataFrame(rows)


def _slope(clocks: pd.Series, lo: int, hi: int) -> float:
    """Median over runs of the wall time per evaluation between evaluations lo and hi: the optimizer's own
    overhead (the test functions cost microseconds), and how it grows with the pool."""
    out = []
    for c in clocks:
        if len(c) < 2:
            continue
        t = np.interp([max(lo, c[0, 0]), hi], c[:, 0], c[:, 1])
        out.append((t[1] - t[0]) / max(1, hi - max(lo, c[0, 0])))
    return float(np.median(out)) if out else np.nan


def plot(runs: pd.DataFrame, path: str) -> str:
    problems = sorted(runs.problem.unique())
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.6), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        sub = runs[runs.problem == problem]
        for strategy, g in sub.groupby("strategy", sort=True):
            grid = np.arange(int(min(s[0] for s in g.steps)), int(g.budget.max()) + 1, 5)
            curves = np.array([[regret_at(s, r, n) for n in grid] for s, r in zip(g.steps, g.regret)])
            q1, med, q3 = np.nanpercentile(curves, [25, 50, 75], axis=0)
            line, = ax.plot(grid, med, label=f"{strategy} ({len(g)} seeds)")
            ax.fill_between(grid, q1, q3, color=line.get_color(), alpha=0.2)
        ax.set_yscale("log")
        ax.set_title(problem)
        ax.set_xlabel("evaluations")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("simple regret (median, quartiles)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def log_summary(name: str, paths: list[str], sweep_prefix: str) -> None:
    from nes_ensemble.tracking import Tracker, default_uri

    tracker = Tracker(default_uri(ROOT), name, f"summary-{name}", {"sweep_prefix": sweep_prefix},
                      {"sweep_dir": sweep_prefix, "kind": "summary"})
    tracker.log_artifacts(paths)
    tracker.finish()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", nargs="+", default=["sgd,nes:300:10"], help="strategies:budget:seeds, one sweep each")
    parser.add_argument("--problems", default="hartmann6,hartmann6_noisy,ackley,levy")
    parser.add_argument("--name", default="compare", help="MLflow experiment and results file name")
    parser.add_argument("--checkpoints", default="100,300,1000", help="evaluation counts for the table")
    parser.add_argument("--jobs", type=int, default=2, help="parallel jobs of the joblib launcher")
    parser.add_argument("--report-only", default="", metavar="SWEEP_PREFIX", help="only report these sweeps")
    args = parser.parse_args()

    prefix = args.report_only or f"outputs/multirun/{args.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if not args.report_only:
        for i, entry in enumerate(args.plan):
            strategies, budget, seeds = entry.split(":")
            launch(strategies, int(budget), int(seeds), args.problems, args.name, f"{prefix}/{i}", args.jobs)
    runs = read_runs(args.name, prefix)
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    df = table(runs, checkpoints)
    command = "python experiments/compare.py " + " ".join(f"'{a}'" if " " in a or "," in a else a
                                                           for a in sys.argv[1:])
    save_table(df, args.name, f"{args.name}: simple regret by strategy (sweeps {prefix})", command)
    png = plot(runs, os.path.join(RESULTS, f"{args.name}.png"))
    log_summary(args.name, [os.path.join(RESULTS, f"{args.name}.md"), os.path.join(RESULTS, f"{args.name}.csv"), png],
                prefix)
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
