"""Wall time of a run whose objective sleeps 0.5 s per call: inline against 4 process and 4 Ray workers.

    python experiments/parallel_speed.py --budget 40 --workers 4
    python experiments/parallel_speed.py --seeds 16 --sleep 0.1 --evaluators inline,processes --name parallel_quality

Prints and saves experiments/results/NAME.{csv,md} (default parallel_speed): wall seconds, the ratio
to inline (measured in this one run), and the regret reached on a 4-D sphere, for each evaluator.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import numpy as np
import pandas as pd
import torch
from common import save_table

import nes_ensemble as ne


def slow_sphere(x: np.ndarray, sleep: float = 0.5) -> float:
    time.sleep(sleep)
    return -float(np.sum((np.asarray(x) - 0.3) ** 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0 .. N-1; medians over them")
    parser.add_argument("--sleep", type=float, default=0.5, help="seconds per evaluation")
    parser.add_argument("--evaluators", default="inline,processes,ray", help="inline first: ratios are to it")
    parser.add_argument("--name", default="parallel_speed", help="results file name under experiments/results/")
    args = parser.parse_args()
    evaluators = args.evaluators.split(",")
    fn = functools.partial(slow_sphere, sleep=args.sleep)
    torch.set_num_threads(1)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if "ray" in evaluators:
        import ray

        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)  # started outside the timing
    rows = []
    for seed in range(args.seeds):
        for evaluator in evaluators:
            start = time.perf_counter()
            kw = {} if evaluator == "inline" else {"evaluator": evaluator, "n_workers": args.workers}
            result = ne.optimize(fn, [(0, 1)] * 4, budget=args.budget, seed=seed, **kw)
            rows.append({"evaluator": evaluator, "seed": seed, "workers": 1 if evaluator == "inline" else args.workers,
                         "evaluations": len(result.X), "wall s": time.perf_counter() - start,
                         "regret": -result.best_y})
    if "ray" in evaluators:
        ray.shutdown()
    runs = pd.DataFrame(rows)
    runs["ratio to inline"] = runs["wall s"] / runs.groupby("seed")["wall s"].transform("first")
    table = runs.groupby("evaluator", sort=False).agg(
        workers=("workers", "first"), seeds=("seed", "count"), evaluations=("evaluations", "first"),
        **{"median wall s": ("wall s", "median"), "median ratio to inline": ("ratio to inline", "median"),
           "median regret": ("regret", "median")}).reset_index()
    save_table(table, args.name, f"{args.budget} evaluations of a {args.sleep:g} s objective",
               "python experiments/parallel_speed.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
