"""Compare settings of the search across several problems: median simple regret per problem.

    python experiments/ablation.py --variants '{"own": {"search": {"select": "own"}}, "mean": {}}'

Each variant is a dict of overrides for ``ne.optimize``. Problems (``--suite default``): Hartmann-6
(300 evaluations, 8 seeds) and Ackley-10, Levy-10, Rosenbrock-10, Styblinski-Tang-8, Rastrigin-5 (200
evaluations, 3 seeds each); ``--suite wide`` adds noisy Hartmann-6 (std 0.1) and Branin; ``--suite
low_budget`` gives few evaluations for the dimension (20-D at 100), ``--suite small_budget`` short runs in
2 to 6 dimensions. Saves
experiments/results/NAME.{csv,md} and NAME_runs.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import pandas as pd
from common import RESULTS, run_parallel, save_table

import nes_ensemble as ne

# (problem, dim, noise std, seeds, budget)
SUITES = {
    "default": [("hartmann6", 0, 0.0, 8, 300), ("ackley", 10, 0.0, 3, 200), ("levy", 10, 0.0, 3, 200),
                ("rosenbrock", 10, 0.0, 3, 200), ("styblinski_tang", 8, 0.0, 3, 200), ("rastrigin", 5, 0.0, 3, 200)],
    "wide": [("hartmann6", 0, 0.0, 10, 300), ("hartmann6", 0, 0.1, 6, 300), ("branin", 0, 0.0, 4, 300),
             ("ackley", 10, 0.0, 4, 300), ("levy", 10, 0.0, 4, 300), ("rosenbrock", 10, 0.0, 4, 300),
             ("styblinski_tang", 8, 0.0, 4, 200), ("rastrigin", 5, 0.0, 4, 200)],
    # few evaluations for the dimension: a design of budget / 4 points, then a handful of rounds
    "low_budget": [("ackley", 20, 0.0, 4, 100), ("levy", 20, 0.0, 4, 100), ("styblinski_tang", 20, 0.0, 4, 100),
                   ("rosenbrock", 8, 0.0, 4, 80), ("hartmann6", 0, 0.0, 4, 60)],
    # short runs in few dimensions
    "small_budget": [("branin", 0, 0.0, 4, 30), ("ackley", 2, 0.0, 4, 40), ("levy", 4, 0.0, 4, 50),
                     ("rosenbrock", 2, 0.0, 4, 40), ("hartmann6", 0, 0.0, 4, 40)],
}


def task(args: tuple) -> dict:
    name, overrides, problem, dim, noise, seed, budget = args
    p = ne.make_problem(problem, dim, noise_std=noise, seed=seed)
    result = ne.optimize(p, p.bounds, budget=budget, seed=seed, **overrides)
    truth = ne.make_problem(problem, dim)  # regret on the noise-free function
    return {"variant": name, "problem": p.name, "seed": seed, "regret": truth.regret(result.best_x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default='{"own": {"search": {"select": "own"}}, "mean": {}}')
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--problems", default="", help="comma-separated subset of the problems (default: all)")
    parser.add_argument("--suite", choices=sorted(SUITES), default="default",
                        help="default: Hartmann-6 (8 seeds) and five problems at 200 evaluations (3 seeds); wide: "
                             "also noisy Hartmann-6 and Branin, 4 to 10 seeds, 300 evaluations; low_budget: 20-D "
                             "problems at 100 evaluations, Rosenbrock-8 at 80, Hartmann-6 at 60 (4 seeds); "
                             "small_budget: 2- to 6-D problems at 30 to 50 evaluations (4 seeds)")
    parser.add_argument("--seeds", type=int, default=0, help="seeds per problem (default: 8 for Hartmann-6, 3 others)")
    parser.add_argument("--name", default="ablation", help="results file name under experiments/results/")
    args = parser.parse_args()
    variants = json.loads(args.variants)
    chosen = [p for p in SUITES[args.suite] if not args.problems or p[0] in args.problems.split(",")]
    tasks = [(n, ov, pr, d, noise, s, b) for n, ov in variants.items() for pr, d, noise, seeds, b in chosen
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
