"""The examples' result tables: nes_ensemble through its Hydra sweeper against Optuna's Hydra sweeper (TPE), and
through NESSearch against Ray Tune's default (random) search, tuning the diabetes model of ``examples/``.

    python experiments/integrations.py --part hydra      # 10 seeds x 2 sweepers x 40 jobs (about 20 minutes)
    python experiments/integrations.py --part ray        # 10 seeds x 2 searchers x 40 trials, 2 at a time

Each sweep is the command a user types (``python examples/hydra_app/train.py -m hydra/sweeper=...``), run
in a fresh process; the Optuna sweeper needs ``pip install --no-deps hydra-optuna-sweeper`` (its PyPI
release pins an old Optuna, and runs with Optuna 5). The table gives the median over seeds of the best
cross-validated RMSE found (lower is better), its interquartile range, the seeds on which nes_ensemble
found a lower RMSE than the other, and the median wall time of a whole sweep. Saves
``experiments/results/integrations_{hydra,ray}{,_runs}.{md,csv}``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import yaml
from common import save_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "examples", "hydra_app", "train.py")
SWEEPERS = {"nes_ensemble": ["hydra/sweeper=nes_ensemble", "hydra.sweeper.budget={n}", "hydra.sweeper.seed={seed}",
                             "hydra.sweeper.tracking.enabled=false"],
            # Optuna's sweeper reads range's stop as included (Hydra's grammar, and ours, exclude it, as Python does):
            # the same values are range(1,10) and range(1,5) there
            "optuna (TPE)": ["hydra/sweeper=optuna", "hydra.sweeper.n_trials={n}", "hydra.sweeper.n_jobs=1",
                             "hydra.sweeper.sampler.seed={seed}", "model.components=range(1,10)",
                             "model.degree=range(1,5)"]}


def hydra_sweep(sweeper: str, seed: int, n: int) -> dict:
    """One sweep of the example app, as a user runs it; its best value and wall time."""
    with tempfile.TemporaryDirectory() as folder:
        args = [a.format(n=n, seed=seed) for a in SWEEPERS[sweeper]]
        start = time.perf_counter()
        done = subprocess.run([sys.executable, APP, "-m", *args, f"hydra.sweep.dir={folder}"], capture_output=True,
                              text=True, cwd=folder)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise RuntimeError(f"{sweeper} seed {seed}: {done.stderr[-2000:]}")
        with open(os.path.join(folder, "optimization_results.yaml")) as f:
            best = yaml.safe_load(f)
    return {"part": "hydra", "searcher": sweeper, "seed": seed, "budget": n, "best_rmse": best["best_value"],
            "seconds": seconds}


def ray_runs(seeds: list[int], n: int) -> list[dict]:
    import ray

    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from ray_tune_search import tune_model

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.path.join(ROOT, "examples")}})
    rows = []
    with tempfile.TemporaryDirectory() as storage:
        for seed in seeds:
            for name, random in (("nes_ensemble (NESSearch)", False), ("Tune's default (random)", True)):
                start = time.perf_counter()
                grid = tune_model(seed, n, random=random, storage=storage)
                errors = [r.metrics.get("rmse") for r in grid if r.metrics and r.metrics.get("rmse") is not None]
                rows.append({"part": "ray", "searcher": name, "seed": seed, "budget": n, "best_rmse": min(errors),
                             "seconds": time.perf_counter() - start})
                print(rows[-1], flush=True)
    ray.shutdown()
    return rows


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """Median best RMSE per searcher, its IQR, seeds where nes_ensemble was lower, median seconds."""
    ours = runs[runs.searcher.str.startswith("nes_ensemble")].set_index("seed").best_rmse
    rows = []
    for name, g in runs.groupby("searcher", sort=False):
        other = g.set_index("seed").best_rmse
        rows.append({"searcher": name, "budget": int(g.budget.iloc[0]), "median best RMSE": g.best_rmse.median(),
                     "IQR": "{:.4g} - {:.4g}".format(*np.percentile(g.best_rmse, [25, 75])),
                     "nes_ensemble lower on": "" if name.startswith("nes_ensemble") else
                     f"{int((ours < other).sum())}/{len(other)} (equal {int((ours == other).sum())})",
                     "median seconds per sweep": g.seconds.median()})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("hydra", "ray"), required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=0, help="jobs (trials) per sweep (default 40)")
    parser.add_argument("--tables-only", action="store_true", help="remake the table from the saved runs")
    args = parser.parse_args()
    seeds = list(range(args.seeds))
    n = args.budget or 40
    name = f"integrations_{args.part}"
    runs_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{name}_runs.csv")
    if args.tables_only:
        rows = pd.read_csv(runs_file).to_dict("records")
    elif args.part == "hydra":
        rows = []
        for seed in seeds:
            for sweeper in SWEEPERS:
                rows.append(hydra_sweep(sweeper, seed, n))
                print(rows[-1], flush=True)
    else:
        rows = ray_runs(seeds, n)
    runs = pd.DataFrame(rows)
    runs.to_csv(runs_file, index=False)
    title = ("The Hydra example: best cross-validated RMSE of the diabetes model, nes_ensemble's sweeper against "
             "Optuna's" if args.part == "hydra" else
             "The Ray Tune example: best cross-validated RMSE of the diabetes model, NESSearch against Tune's default")
    command = " ".join(a for a in sys.argv[1:] if a != "--tables-only")
    save_table(table(runs), name, title, f"python experiments/integrations.py {command}")


if __name__ == "__main__":
    main()
