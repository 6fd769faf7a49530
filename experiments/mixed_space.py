"""Mixed spaces: integers, categoricals and log scales, nes_ensemble against TPE, Optuna's GP and random.

    python experiments/mixed_space.py                          # 10 seeds, 50 and 150 evaluations
    python experiments/mixed_space.py --seeds 3 --name mixed_space_quick

Problems, each a named space (``ne.Float`` / ``ne.Int`` / ``ne.Categorical``):

* ``mixed7``: a synthetic system of 7 knobs with a known optimum (value 0): two floats, a learning
  rate on a log scale, a batch size (an integer on a log scale), a whole-number depth, and two
  categoricals, one of whose best choice depends on the depth. Regret: minus the value at the
  recommended setting.
* ``read_cluster``: the read cluster's policy knobs (``nes_ensemble.read_cluster.knob_space``: four
  weights, temperature on a log scale, the integer latency memory), minimizing live read latency
  (noisy, stateful). Its optimum is unknown: the score is the mean latency (ticks) of the
  recommended setting measured on fresh traffic (3 clusters, 10 windows each), lower is better.

The network strategies plan by their budget, so they run once per budget; the others run once to
the largest budget and are read at each. Saves experiments/results/NAME.{md,csv} and NAME_runs.csv.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import pandas as pd
from common import RESULTS, run_parallel, save_table

import nes_ensemble as ne
from nes_ensemble.read_cluster import ClusterConfig, knob_space, knobs_to_x, measure

BUDGETS = (50, 150)
PLANS_BY_BUDGET = {"nes", "sgd"}
MIXED7 = {"x": ne.Float(-5.0, 5.0), "share": ne.Float(0.0, 1.0), "lr": ne.Float(1e-5, 1e-1, log=True),
          "batch": ne.Int(1, 256, log=True), "depth": ne.Int(0, 10),
          "codec": ne.Categorical(["none", "lz4", "zstd"]), "queue": ne.Categorical(["fifo", "lifo", "prio", "fair"])}


def mixed7(p: dict) -> float:
    """Maximum 0 at x 1.5, share 0.7, lr 1e-3, batch 32, depth 6, codec zstd, queue prio (prio wins when depth >= 5)."""
    queue = {"fifo": 0.8, "lifo": 0.3, "prio": 0.0 if p["depth"] >= 5 else 0.6, "fair": 0.4}[p["queue"]]
    codec = {"none": 0.5, "lz4": 0.25, "zstd": 0.0}[p["codec"]]
    return -((p["x"] - 1.5) ** 2 / 4 + 2 * (p["share"] - 0.7) ** 2 + (np.log10(p["lr"]) + 3) ** 2 / 2
             + (np.log2(p["batch"]) - 5) ** 2 / 4 + (p["depth"] - 6) ** 2 / 10 + queue + codec)


def task(args: tuple) -> list[dict]:
    """One run: a row per budget it answers (problem, strategy, seed, budget, score, ms per evaluation)."""
    strategy, problem, seed, budgets = args
    if problem == "mixed7":
        fn, space, direction = mixed7, MIXED7, "maximize"
    else:
        live = ne.make_problem("read_cluster", seed=seed, typed=True)
        fn, space, direction = (lambda p: -live.evaluate(live.space.accept(p))[0]), knob_space().params, "minimize"
    start = time.perf_counter()
    result = ne.optimize(fn, space, budget=max(budgets), seed=seed, strategy=strategy, direction=direction)
    seconds = time.perf_counter() - start
    rows = []
    for n in budgets:
        y = np.where(np.isfinite(result.y[:n]), result.y[:n], np.inf if direction == "minimize" else -np.inf)
        i = int(np.argmin(y) if direction == "minimize" else np.argmax(y))
        best = result.best_params if n == len(result.y) else result.params[i]
        if problem == "mixed7":
            score = -mixed7(best)
        else:
            x, memory = knobs_to_x(best)
            score = float(measure(x, "tuned", range(3), ClusterConfig(), windows=10, memory=memory).mean())
        rows.append({"problem": problem, "strategy": strategy, "seed": seed, "budget": n, "score": score,
                     "ms_per_eval": 1000 * seconds / len(result.y)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default="nes,tpe,ogp,random")
    parser.add_argument("--problems", default="mixed7,read_cluster")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="mixed_space")
    args = parser.parse_args()
    todo = [(s, p, seed, group) for s in args.strategies.split(",") for p in args.problems.split(",")
            for seed in range(args.seeds)
            for group in ([(b,) for b in BUDGETS] if s in PLANS_BY_BUDGET else [BUDGETS])]
    runs = pd.DataFrame([row for rows in run_parallel(task, todo, args.workers) for row in rows])
    os.makedirs(RESULTS, exist_ok=True)
    runs.to_csv(os.path.join(RESULTS, f"{args.name}_runs.csv"), index=False)
    order = list(dict.fromkeys(runs.strategy))
    table = runs.pivot_table(index=["problem", "budget"], columns="strategy", values="score", aggfunc="median")
    command = "python experiments/mixed_space.py " + " ".join(sys.argv[1:])
    save_table(table[order].reset_index(), args.name, "Median score (mixed7: regret; read_cluster: mean read "
               "latency in ticks of the recommended setting on fresh traffic; lower is better)", command)
    cost = runs.groupby("strategy").ms_per_eval.median().reindex(order).reset_index()
    save_table(cost, f"{args.name}_cost", "Optimizer and simulator milliseconds per evaluation (median)", command)


if __name__ == "__main__":
    main()
