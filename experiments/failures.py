"""Objectives that fail in part of the box: how many evaluations fail, and what is found.

    python experiments/failures.py                       # 10 seeds, 100 evaluations
    python experiments/failures.py --seeds 3 --name failures_quick
    python experiments/failures.py --budget 300 --problems branin_side,branin_edge --variants "feasibility (default)"

Real systems crash, run out of memory or time out for some settings. A failed evaluation (NaN) is
kept and never learnt from; this script measures what the Gaussian-process members' feasibility
model (``search.kernel.feasibility``, ``nes_ensemble/members/feasibility.py``) saves, against the same
run with it off. Problems (the failing region in the unit cube):

* ``hartmann6_half``: Hartmann-6, failing where x0 + x1 > 1 (half the box, its local maximum too);
* ``branin_side``: Branin, failing where x0 > 0.6 (one of its three optima);
* ``branin_edge``: Branin, failing where x0 > 0.55, just past its optimum at x0 = 0.543 (the best
  setting of a real system often lies at the edge of those that crash);
* ``levy10_corner``: Levy-10, failing where x0 > 0.7 and x1 > 0.7;
* ``hartmann6_random``: Hartmann-6, one evaluation in ten failing at random (no region to learn).

Regret is that of the best successful point on the noise-free function. Saves
experiments/results/NAME.{md,csv} and NAME_runs.csv: medians over seeds of the regret and of the
failed evaluations, and the optimizer's own seconds per evaluation.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib

import numpy as np
import pandas as pd
from common import run_parallel, save_table

import nes_ensemble as ne

BASE = {"hartmann6_half": ("hartmann6", 0), "branin_side": ("branin", 0), "branin_edge": ("branin", 0),
        "levy10_corner": ("levy", 10),
        "hartmann6_random": ("hartmann6", 0)}
VARIANTS = {"feasibility (default)": {}, "off": {"search": {"kernel": {"feasibility": False}}}}


def fails(label: str, u: np.ndarray) -> bool:
    """Whether the evaluation at u (unit cube) fails."""
    if label == "hartmann6_half":
        return u[0] + u[1] > 1.0
    if label == "branin_side":
        return u[0] > 0.6
    if label == "branin_edge":
        return u[0] > 0.55
    if label == "levy10_corner":
        return u[0] > 0.7 and u[1] > 0.7
    return zlib.crc32(np.round(u, 9).tobytes()) % 10 == 0  # a tenth, fixed per point


def task(args: tuple) -> dict:
    """One run: the regret of its best successful point and how many evaluations failed."""
    label, variant, seed, budget = args
    name, dim = BASE[label]
    problem = ne.make_problem(name, dim)
    low, high = problem.bounds[:, 0], problem.bounds[:, 1]

    def fn(x: np.ndarray) -> float:
        return float("nan") if fails(label, (x - low) / (high - low)) else float(problem(x))

    start = time.perf_counter()
    result = ne.optimize(fn, problem.bounds, budget=budget, seed=seed, evaluator={"max_failures": 0},
                         **VARIANTS[variant])
    seconds = time.perf_counter() - start
    return {"problem": label, "variant": variant, "seed": seed, "regret": float(problem.regret(result.best_x)),
            "failed": int((~np.isfinite(result.y)).sum()), "ms_per_eval": 1000 * seconds / budget}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--problems", default=",".join(BASE))
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="failures")
    args = parser.parse_args()
    tasks = [(p, v, s, args.budget) for p in args.problems.split(",") for v in args.variants.split(",")
             for s in range(args.seeds)]
    runs = pd.DataFrame(run_parallel(task, tasks, args.workers))
    from common import RESULTS
    runs.to_csv(f"{RESULTS}/{args.name}_runs.csv", index=False)
    table = runs.groupby(["problem", "variant"], sort=False).agg(
        regret=("regret", "median"), failed=("failed", "median"), most_failed=("failed", "max"),
        ms_per_eval=("ms_per_eval", "median")).reset_index()
    save_table(table, args.name, f"Objectives that fail in part of the box: median over {args.seeds} seeds, "
               f"{args.budget} evaluations", "python experiments/failures.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
