"""The original benchmark, reproduced: Hartmann-6, k networks, distance of the best x to x* over evaluations.

    python experiments/reference.py --ks 1,2,5,10,20,30 --seeds 3 --budget 2300

One run per (k, seed) with the default settings and ``ensemble.members=k``; the best point among
the first n evaluations is read from each run's history at n = 300, 500, 1000, 1500, ... budget.
Saves experiments/results/reference_{distance,regret}.{csv,md} (medians over seeds, rows k,
columns evaluations) and reference_3d.png (evaluations x k x distance, as in the original write-up);
``--name`` changes the prefix.
"""

from __future__ import annotations

import argparse
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from common import RESULTS, best_so_far, run_parallel, save_table  # noqa: E402

import nes_ensemble as ne  # noqa: E402


def task(args: tuple) -> list[dict]:
    k, seed, budget, marks, mode, strategy = args
    h6 = ne.make_problem("hartmann6")
    start = time.perf_counter()
    overrides = {"ensemble": {"members": k}}
    if mode == "original":
        overrides = {"ensemble": {"members": k, "widths": [30], "depths": [3], "activations": ["tanh"],
                                  "optimizers": ["rmsprop", "rprop", "adam"], "sparsity_min": 0.1,
                                  "sparsity_max": 0.1, "bootstrap": False},
                     "search": {"mode": "original", "n_init": 300, "original": {"windows": True}}}
    result = ne.optimize(h6, h6.bounds, budget=budget, seed=seed, strategy=strategy, **overrides)
    seconds = time.perf_counter() - start
    rows = []
    for n in marks:
        x = best_so_far(result.X, result.y, n)
        rows.append({"k": k, "seed": seed, "evaluations": n, "distance": h6.distance(x), "regret": h6.regret(x),
                     "seconds": seconds})
    return rows


def plot_3d(table: pd.DataFrame, path: str) -> None:
    ks = table.index.to_numpy()
    marks = table.columns.to_numpy()
    fig = plt.figure(figsize=(7, 5))
    ax = fig.add_subplot(projection="3d")
    xx, yy = np.meshgrid(marks, np.arange(len(ks)))
    ax.plot_surface(xx, yy, table.to_numpy(), cmap="viridis", alpha=0.85, edgecolor="k", linewidth=0.3)
    ax.set_xlabel("evaluations")
    ax.set_yticks(range(len(ks)), [str(k) for k in ks])
    ax.set_ylabel("networks k")
    ax.set_zlabel("median distance to x*")
    ax.set_title("Hartmann-6: distance of the best x to x*")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ks", default="1,2,5,10,20,30")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=2300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", default="default", choices=["default", "original"])
    parser.add_argument("--strategy", default="nes", help="nes (evolution on top) or sgd")
    parser.add_argument("--name", default="", help="results file prefix (default: reference, reference_original)")
    args = parser.parse_args()
    ks = [int(k) for k in args.ks.split(",")]
    marks = [n for n in (300, 500, 1000, 1500, 2000, 2300) if n <= args.budget]
    marks = sorted(set(marks + [args.budget]))
    # the slowest jobs first, so the pool does not wait on one long job at the end
    tasks = [(k, s, args.budget, marks, args.mode, args.strategy)
             for k in sorted(ks, reverse=True) for s in range(args.seeds)]
    runs = pd.DataFrame([row for rows in run_parallel(task, tasks, args.workers) for row in rows])
    prefix = args.name or ("reference" if args.mode == "default" else f"reference_{args.mode}")
    runs.to_csv(f"{RESULTS}/{prefix}_runs.csv", index=False)
    command = ("python experiments/reference.py " + " ".join(sys.argv[1:])).strip()
    for metric in ("distance", "regret"):
        pivot = runs.pivot_table(index="k", columns="evaluations", values=metric, aggfunc="median")
        table = pivot.reset_index()
        table.columns = ["k"] + [f"{c} evals" for c in pivot.columns]
        save_table(table, f"{prefix}_{metric}",
                   f"Hartmann-6, median {metric} of the best x over {args.seeds} seeds ({args.mode} settings)", command)
        if metric == "distance":
            plot_3d(pivot, f"{RESULTS}/{prefix}_3d.png")
    secs = runs.groupby("k")["seconds"].median()
    print("median seconds per run by k:", secs.round(1).to_dict())


if __name__ == "__main__":
    main()
