"""Small budgets: 30 to 150 evaluations, nes_ensemble against the optimizers users would pick instead.

    python experiments/small_budget.py                        # every strategy, 10 seeds (Hartmann-6: 20)
    python experiments/small_budget.py --strategies nes,ogp --seeds 5 --name small_budget_quick
    python experiments/small_budget.py --suite large --strategies nes,cmaes --name large_budget

Problems: Hartmann-6, noisy Hartmann-6 (std 0.1), Branin, Ackley-10, Levy-10, Rosenbrock-10. Budgets
30, 50, 100 and 150. A strategy that plans by its budget (the network strategies) runs once per
budget; the others run once to the largest budget and are read at each. Regret is simple regret on
the noise-free function at the recommended point (``result.best_x``) of each budget. Strategies:
``nes`` (the default) and any ``strategy=`` name (``ogp`` is Optuna's GPSampler, ``gp`` BoTorch's
GP with LogEI; both need the ``baselines`` extra). BoTorch's GP costs about half a second per
evaluation, so it runs ``--gp-seeds`` seeds.

Saves experiments/results/NAME.{md,csv}, NAME_runs.csv and NAME.png: median regret per problem,
budget and strategy, the seeds within each problem's target, and the optimizer's own seconds per
evaluation (the test functions cost microseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from common import RESULTS, run_parallel, save_table  # noqa: E402

import nes_ensemble as ne  # noqa: E402

# (label, problem, dim, noise std, seeds, regret counted as reached)
PROBLEMS = [("hartmann6", "hartmann6", 0, 0.0, 20, 0.01), ("noisy_hartmann6", "hartmann6", 0, 0.1, 10, 0.05),
            ("branin", "branin", 0, 0.0, 10, 0.01), ("ackley10", "ackley", 10, 0.0, 10, 1.0),
            ("levy10", "levy", 10, 0.0, 10, 1.0), ("rosenbrock10", "rosenbrock", 10, 0.0, 10, 10.0)]
# --suite large: the scale the networks are for (1000 evaluations, 20 dimensions, 3 seeds)
LARGE = [("ackley20", "ackley", 20, 0.0, 3, 1.0), ("levy20", "levy", 20, 0.0, 3, 1.0),
         ("rosenbrock20", "rosenbrock", 20, 0.0, 3, 10.0)]
BUDGETS = (30, 50, 100, 150)
PLANS_BY_BUDGET = {"nes", "sgd", "es", "nes_es"}


def task(args: tuple) -> list[dict]:
    """One run: rows (problem, strategy, seed, budget, regret, seconds per evaluation) for each budget it answers."""
    strategy, label, problem, dim, noise, seed, budgets = args
    name, overrides = strategy if isinstance(strategy, tuple) else (strategy, {"strategy": strategy})
    overrides = dict(overrides)
    p = ne.make_problem(problem, dim, noise_std=noise, seed=seed)
    truth = ne.make_problem(problem, dim)
    start = time.perf_counter()
    result = ne.optimize(p, p.bounds, budget=max(budgets), seed=seed, strategy=overrides.pop("strategy", "nes"),
                         **overrides)
    strategy = name
    seconds = time.perf_counter() - start
    rows = []
    for n in budgets:
        y = np.where(np.isfinite(result.y[:n]), result.y[:n], -np.inf)
        observed = result.X[int(np.argmax(y))]  # the best observation (what the baselines recommend)
        best_x = result.best_x if n == len(result.y) else observed
        rows.append({"problem": label, "strategy": strategy, "seed": seed, "budget": n,
                     "regret": truth.regret(best_x), "regret_observed": truth.regret(observed),
                     "ms_per_eval": 1000 * seconds / len(result.y)})
    return rows


def tasks(strategies: list, seeds: int, gp_seeds: int, problems: list[str], first_seed: int = 0) -> list[tuple]:
    """(strategy, problem ..., seed, budgets) of every run: one per budget for a strategy that plans by it."""
    out = []
    for strategy in strategies:
        name = strategy[0] if isinstance(strategy, tuple) else strategy
        for label, problem, dim, noise, n_seeds, _ in PROBLEMS:
            if problems and label not in problems:
                continue
            n = min(gp_seeds, n_seeds) if name == "gp" else (seeds or n_seeds)
            by_budget = isinstance(strategy, tuple) or name in PLANS_BY_BUDGET
            groups = [(b,) for b in BUDGETS] if by_budget else [BUDGETS]
            out += [(strategy, label, problem, dim, noise, s, g) for s in range(first_seed, first_seed + n)
                    for g in groups]
    return out


def report(runs: pd.DataFrame, name: str, command: str) -> None:
    target = {label: t for label, *_, t in PROBLEMS}
    runs["reached"] = runs.regret <= runs.problem.map(target)
    order = list(dict.fromkeys(runs.strategy))
    table = runs.pivot_table(index=["problem", "budget"], columns="strategy", values="regret", aggfunc="median")
    table = table[order].reset_index()
    reached = runs.groupby(["problem", "budget", "strategy"]).apply(
        lambda g: f"{int(g.reached.sum())}/{len(g)}", include_groups=False).unstack()[order].reset_index()
    cost = runs.groupby("strategy").ms_per_eval.median().reindex(order).reset_index()
    save_table(table, name, "Median simple regret (lower is better)", command)
    save_table(reached, f"{name}_reached", "Seeds within the target regret", command)
    save_table(cost, f"{name}_cost", "Optimizer milliseconds per evaluation (median over runs)", command)
    problems = list(dict.fromkeys(runs.problem))
    fig, axes = plt.subplots(1, len(problems), figsize=(3.2 * len(problems), 3.2), squeeze=False)
    for ax, problem in zip(axes[0], problems):
        sub = runs[runs.problem == problem]
        for strategy in order:
            med = sub[sub.strategy == strategy].groupby("budget").regret.median()
            ax.plot(med.index, np.maximum(med.values, 1e-12), marker="o", label=strategy)
        ax.set_yscale("log")
        ax.set_title(problem)
        ax.set_xlabel("evaluations")
    axes[0][0].set_ylabel("median simple regret")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"{name}.png"), dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strategies", default="nes,ogp,gp,tpe,cmaes,random")
    parser.add_argument("--variants", default="", help='JSON: name -> optimize overrides, run like nes, e.g. '
                        '\'{"until150": {"search": {"kernel": {"until": 150}}}}\'')
    parser.add_argument("--seeds", type=int, default=0, help="seeds per problem (default: 20 Hartmann-6, 10 others)")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (more seeds for earlier runs)")
    parser.add_argument("--gp-seeds", type=int, default=5, help="seeds of BoTorch's GP (about 0.5 s an evaluation)")
    parser.add_argument("--problems", default="", help="comma-separated subset, e.g. hartmann6,branin")
    parser.add_argument("--budgets", default="", help="comma-separated budgets (default 30,50,100,150; "
                        "--suite large: 1000)")
    parser.add_argument("--suite", default="small", choices=["small", "large"],
                        help="small: the six problems above; large: Ackley-20, Levy-20, Rosenbrock-20, 3 seeds")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name", default="small_budget_baselines", help="results file name")
    parser.add_argument("--include", default="", help="comma-separated names of earlier results whose runs join "
                        "the tables (NAME_runs.csv), e.g. to add strategies without rerunning the others")
    args = parser.parse_args()
    global BUDGETS, PROBLEMS
    if args.suite == "large":
        PROBLEMS = LARGE
    BUDGETS = tuple(int(b) for b in (args.budgets or ("1000" if args.suite == "large" else "30,50,100,150"))
                    .split(","))
    strategies: list = [s for s in args.strategies.split(",") if s]
    strategies += list(json.loads(args.variants).items()) if args.variants else []
    todo = tasks(strategies, args.seeds, args.gp_seeds, [p for p in args.problems.split(",") if p], args.first_seed)
    runs = pd.DataFrame([row for rows in run_parallel(task, todo, args.workers) for row in rows])
    earlier = [pd.read_csv(os.path.join(RESULTS, f"{n}_runs.csv")) for n in args.include.split(",") if n]
    runs = pd.concat([runs, *earlier], ignore_index=True)
    os.makedirs(RESULTS, exist_ok=True)
    runs.to_csv(os.path.join(RESULTS, f"{args.name}_runs.csv"), index=False)
    report(runs, args.name, "python experiments/small_budget.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
