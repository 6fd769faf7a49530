"""Compare strategies across problems and seeds: Hydra sweeps in, MLflow runs out, a table and a plot.

    python experiments/compare.py --plan 'sgd,nes:1000:10' 'es,nes_es:300:5' \\
        --problems hartmann6,hartmann6_noisy,ackley,levy --name nes_vs_sgd

Each ``--plan`` entry is ``strategies:budget:seeds`` and becomes one Hydra sweep
(``python -m nes_ensemble -m hydra/launcher=joblib ...``): every job is one MLflow run in the
experiment ``--name``. The report step then reads the jobs back from their run directories and writes, under
experiments/results/:

* ``NAME.md`` / ``.csv``: the sweep summary's table (``nes_ensemble.app.sweep``: median simple regret and
  interquartile range at fixed evaluation counts, evaluations to a target regret, median wall time) over
  all the sweeps, plus the optimizer's milliseconds per evaluation over the first and last 100;
* ``NAME.png``: regret against evaluations, median and quartile band, one panel per problem.

Both are also logged as artifacts of a summary run in the same experiment. The jobs are read from their
run directories (summary.json, metrics.jsonl); ``--report-only SWEEP_PREFIX`` re-reads finished sweeps
without running anything.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
from common import RESULTS, save_table

from nes_ensemble.app import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(strategies: str, budget: int, seeds: int, problems: str, name: str, sweep_dir: str, jobs: int) -> None:
    """One Hydra multirun over strategies x problems x seeds, run in parallel by the joblib launcher (it ends with
    its own sweep summary)."""
    cmd = [sys.executable, "-m", "nes_ensemble", "-m", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}",
           f"hydra.sweep.dir={sweep_dir}", f"strategy={strategies}", f"problem={problems}",
           f"seed=range(0,{seeds})", f"budget={budget}", f"tracking.experiment={name}", "progress=false"]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def _slope(clocks: pd.Series, steps: pd.Series, lo: int, hi: int) -> float:
    """Median over runs of the wall time per evaluation between evaluations lo and hi: the optimizer's own
    overhead (the test functions cost microseconds), and how it grows with the pool."""
    out = []
    for c, s in zip(clocks, steps):
        if len(c) < 2:
            continue
        t = np.interp([max(lo, s[0]), hi], s, c)
        out.append((t[1] - t[0]) / max(1, hi - max(lo, s[0])))
    return float(np.median(out)) if out else np.nan


def with_overhead(df: pd.DataFrame, jobs: pd.DataFrame) -> pd.DataFrame:
    """The sweep table plus the milliseconds per evaluation over the first and the last 100 evaluations."""
    for (problem, strategy), g in jobs.groupby(["problem", "strategy"]):
        rows = (df.problem == problem) & (df.strategy == strategy)
        budget = int(g.budget.max())
        df.loc[rows, "ms per eval, first 100"] = 1000 * _slope(g.clock, g.steps, 0, 100)
        df.loc[rows, "ms per eval, last 100"] = 1000 * _slope(g.clock, g.steps, budget - 100, budget)
    return df


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
    jobs = sweep.read_jobs(os.path.join(ROOT, prefix))
    if jobs.empty:
        raise SystemExit(f"no finished job under {prefix!r}")
    checkpoints = [int(c) for c in args.checkpoints.split(",")]
    df = with_overhead(sweep.table(jobs, checkpoints), jobs)
    command = "python experiments/compare.py " + " ".join(f"'{a}'" if " " in a or "," in a else a
                                                           for a in sys.argv[1:])
    save_table(df, args.name, f"{args.name}: simple regret by strategy (sweeps {prefix})", command)
    png = sweep.plot(jobs, os.path.join(RESULTS, f"{args.name}.png"))
    from nes_ensemble.app.tracking import default_uri

    sweep.record(df, [os.path.join(RESULTS, f"{args.name}.md"), os.path.join(RESULTS, f"{args.name}.csv"), png],
                 os.path.join(ROOT, prefix), default_uri(ROOT), args.name)
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
