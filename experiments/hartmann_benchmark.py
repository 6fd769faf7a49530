"""Hartmann-6 at 300 evaluations: nes_ensemble's defaults against CMA-ES and random search, same seeds.

    python experiments/hartmann_benchmark.py --seeds 10 --budget 300

Prints and saves (experiments/results/hartmann_benchmark.{csv,md}) the median simple regret, its
interquartile range, the median distance of the best x to x*, how many seeds came within 0.01 of
the optimum, and seconds per run (ratios are what to compare: this machine is shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
from common import RESULTS, iqr, run_parallel, save_table

import nes_ensemble as ne


def run_nes(seed: int, budget: int, strategy: str) -> tuple[np.ndarray, float]:
    h6 = ne.make_problem("hartmann6")
    result = ne.optimize(h6, h6.bounds, budget=budget, seed=seed, strategy=strategy)
    return result.best_x, float(result.best_y)


def run_cmaes(seed: int, budget: int) -> tuple[np.ndarray, float]:
    """The ``cma`` package's CMA-ES in the unit cube: start at the centre, sigma0 0.25 (a quarter of the
    range, as its documentation advises), default population size, seeded by the run's seed."""
    import cma

    h6 = ne.make_problem("hartmann6")
    es = cma.CMAEvolutionStrategy(np.full(6, 0.5), 0.25, {"bounds": [0, 1], "seed": seed + 1, "verbose": -9})
    X, y = [], []
    while len(y) < budget:
        cand = es.ask()
        vals = [h6(np.clip(c, 0, 1)) for c in cand[: budget - len(y)]]
        X += [np.clip(c, 0, 1) for c in cand[: len(vals)]]
        y += vals
        if len(vals) == len(cand):
            es.tell(cand, [-v for v in vals])  # cma minimizes
    i = int(np.argmax(y))
    return X[i], y[i]


def run_random(seed: int, budget: int) -> tuple[np.ndarray, float]:
    h6 = ne.make_problem("hartmann6")
    X = np.random.default_rng(seed).random((budget, 6))
    y = h6.evaluate(X)
    return X[int(np.argmax(y))], float(y.max())


def task(args: tuple) -> dict:
    method, seed, budget, overrides = args
    start = time.perf_counter()
    if method.startswith("nes_ensemble"):
        best_x, best_y = run_nes(seed, budget, "sgd" if method.endswith("sgd") else "nes")
    elif method == "cma-es":
        best_x, best_y = run_cmaes(seed, budget)
    else:
        best_x, best_y = run_random(seed, budget)
    h6 = ne.make_problem("hartmann6")
    return {"method": method, "seed": seed, "regret": h6.regret(best_x), "distance": h6.distance(best_x),
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods", default="nes_ensemble,nes_ensemble-sgd,cma-es,random",
                        help="nes_ensemble (default strategy nes), nes_ensemble-sgd, cma-es, random")
    args = parser.parse_args()
    tasks = [(m, s, args.budget, {}) for m in args.methods.split(",") for s in range(args.seeds)]
    runs = pd.DataFrame(run_parallel(task, tasks, args.workers))
    rows = []
    for method, g in runs.groupby("method", sort=False):
        rows.append({"method": method, "median regret": g.regret.median(), "regret IQR": iqr(g.regret),
                     "median distance to x*": g.distance.median(),
                     "seeds within 0.01": f"{(g.regret < 0.01).sum()}/{len(g)}",
                     "median seconds": g.seconds.median()})
    table = pd.DataFrame(rows)
    command = "python experiments/hartmann_benchmark.py " + " ".join(sys.argv[1:])
    title = f"Hartmann-6, {args.budget} evaluations, {args.seeds} seeds"
    save_table(table, "hartmann_benchmark", title, command.strip())
    runs.to_csv(os.path.join(RESULTS, "hartmann_benchmark_runs.csv"), index=False)


if __name__ == "__main__":
    main()
