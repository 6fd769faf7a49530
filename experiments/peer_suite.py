"""The peer suite: the 24 noise-free BBOB functions at 20 evaluations per dimension, against Optuna's samplers.

    pip install ioh                  # the BBOB functions (IOHexperimenter's implementation)
    python experiments/peer_suite.py --dims 5 --seeds 3 --name peer5_quick
    python experiments/peer_suite.py --dims 5,10 --strategies nes,tpe,ogp --seeds 10

Each function (instance 1, box [-5, 5]^d) is minimized through ``ne.optimize`` with ``direction="minimize"``
and a budget of 20 d evaluations, as peer benchmarks run it. Reported per dimension and strategy: the
functions on which it has the lowest median precision (f(x) - f_opt at its best evaluation; ties shared),
the share of the targets 1e2, 1e1, ..., 1e-8 its runs reach (averaged over functions and seeds, as an
ECDF of runs to targets reads at the end of the budget), and the median precision per function.

Saves experiments/results/NAME.{md,csv} (per function), NAME_summary.{md,csv} and NAME_runs.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
from common import RESULTS, run_parallel, save_table  # noqa: E402

import nes_ensemble as ne

TARGETS = 10.0 ** np.arange(2, -9, -1)  # precisions 1e2 ... 1e-8


def task(args: tuple) -> dict:
    """One run: the best precision a strategy reaches on one function within 20 d evaluations."""
    import ioh

    strategy, fid, dim, seed = args
    name, overrides = strategy if isinstance(strategy, tuple) else (strategy, {"strategy": strategy})
    overrides = dict(overrides)
    problem = ioh.get_problem(fid, instance=1, dimension=dim, problem_class=ioh.ProblemClass.BBOB)
    f_opt = float(problem.optimum.y)
    bounds = [(-5.0, 5.0)] * dim
    start = time.perf_counter()
    result = ne.optimize(lambda x: float(problem(list(map(float, x)))), bounds, budget=20 * dim, seed=seed,
                         strategy=overrides.pop("strategy", "nes"), direction="minimize", **overrides)
    seconds = time.perf_counter() - start
    y = np.asarray(result.y, dtype=float)
    best = float(np.nanmin(y)) - f_opt
    return {"dim": dim, "function": fid, "name": problem.meta_data.name, "strategy": name, "seed": seed,
            "precision": max(best, 0.0), "ms_per_eval": 1000 * seconds / len(y)}


def summarize(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per function: the median precision of each strategy; per dimension: wins and the share of targets."""
    order = list(dict.fromkeys(runs.strategy))
    per_function = runs.pivot_table(index=["dim", "function", "name"], columns="strategy", values="precision",
                                    aggfunc="median")[order]
    rows = []
    for dim, table in per_function.groupby(level="dim"):
        best = table.min(axis=1)
        wins = table.le(best * (1 + 1e-9) + 1e-12, axis=0)  # ties shared
        share = wins.div(wins.sum(axis=1), axis=0).sum()
        sub = runs[runs.dim == dim]
        reached = sub.groupby("strategy").precision.apply(lambda p: float((p.values[:, None] <= TARGETS).mean()))
        for strategy in order:
            rows.append({"dim": dim, "strategy": strategy, "best on (functions)": round(float(share[strategy]), 2),
                         "targets reached": round(float(reached[strategy]), 3),
                         "ms_per_eval": float(sub[sub.strategy == strategy].ms_per_eval.median())})
    return per_function.reset_index(), pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default="nes,tpe,ogp,cmaes")
    parser.add_argument("--variants", default="", help='JSON: name -> optimize overrides, run like nes, e.g. '
                        '\'{"rank": {"search": {"kernel": {"y_transform": "rank"}}}}\'')
    parser.add_argument("--include", default="", help="comma-separated names of earlier results whose runs join "
                        "the tables (NAME_runs.csv)")
    parser.add_argument("--dims", default="5", help="comma-separated dimensions (peer suites use 5 and 10)")
    parser.add_argument("--functions", default="", help="comma-separated BBOB function ids (default: all 24)")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="peer_suite", help="results file name")
    args = parser.parse_args()
    functions = [int(f) for f in args.functions.split(",") if f] or list(range(1, 25))
    strategies: list = [s for s in args.strategies.split(",") if s]
    strategies += list(json.loads(args.variants).items()) if args.variants else []
    todo = [(s, f, d, seed) for d in (int(d) for d in args.dims.split(",")) for f in functions
            for s in strategies for seed in range(args.seeds)]
    runs = pd.DataFrame(run_parallel(task, todo, args.workers))
    earlier = [pd.read_csv(f"{RESULTS}/{n}_runs.csv") for n in args.include.split(",") if n]
    runs = pd.concat([runs, *[e[e.dim.isin(runs.dim.unique()) & e.function.isin(functions)] for e in earlier]],
                     ignore_index=True)
    runs.to_csv(f"{RESULTS}/{args.name}_runs.csv", index=False)
    per_function, summary = summarize(runs)
    command = "python experiments/peer_suite.py " + " ".join(sys.argv[1:])
    save_table(per_function, args.name, "Median precision f(x) - f_opt per function (lower is better)", command)
    save_table(summary, f"{args.name}_summary", "Functions with the lowest median (ties shared) and the share of "
               "targets 1e2 ... 1e-8 reached", command)


if __name__ == "__main__":
    main()
