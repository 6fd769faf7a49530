"""Compare settings of the search across several problems: median simple regret per problem.

    python experiments/ablation.py --variants '{"own": {"search": {"select": "own"}}, "mean": {}}'

Each variant is a dict of overrides for ``ne.optimize``. Problems: Hartmann-6 (300 evaluations,
8 seeds) and Ackley-10, Levy-10, Rosenbrock-10, Styblinski-Tang-8, Rastrigin-5 (200 evaluations,
3 seeds each). Saves experiments/results/ablation.{csv,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd
from common import RESULTS, run_parallel, save_table

import nes_ensemble as ne

PROBLEMS = [("hartmann6", 0, 8, 300), ("ackley", 10, 3, 200), ("levy", 10, 3, 200), ("rosenbrock", 10, 3, 200),
            ("styblinski_tang", 8, 3, 200), ("rastrigin", 5, 3, 200)]


def task(args: tuple) -> dict:
    name, overrides, problem, dim, seed, budget = args
    p = ne.make_problem(problem, dim)
    result = ne.optimize(p, p.bounds, budget=budget, seed=seed, **overrides)
    return {"variant": name, "problem": p.name, "seed": seed, "regret": p.regret(result.best_x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default='{"own": {"search": {"select": "own"}}, "mean": {}}')
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--problems", default="", help="comma-separated subset of the problems (default: all)")
    parser.add_argument("--seeds", type=int, default=0, help="seeds per problem (default: 8 for Hartmann-6, 3 others)")
    parser.add_argument("--name", default="ablation", help="results file name under experiments/results/")
    args = parser.parse_args()
    variants = json.loads(args.variants)
    chosen = [p for p in PROBLEMS if not args.problems or p[0] in args.problems.split(",")]
    tasks = [(n, ov, pr, d, s, b) for n, ov in variants.items() for pr, d, seeds, b in chosen
             for s in range(args.seeds or seeds)]
    runs = pd.DataFrame(run_parallel(task, tasks, args.workers))
    table = runs.pivot_table(index="variant", columns="problem", values="regret", aggfunc="median")
    table = table.reindex(list(variants)).reset_index()
    command = "python experiments/ablation.py " + " ".join(f"'{a}'" if a.startswith("{") else a for a in sys.argv[1:])
    os.makedirs(RESULTS, exist_ok=True)
    runs.to_csv(os.path.join(RESULTS, f"{args.name}_runs.csv"), index=False)
    save_table(table, args.name, "Median simple regret by search setting (lower is better)", command.strip())


if __name__ == "__main__":
    main()
