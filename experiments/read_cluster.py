"""Tune the read-cluster's replica selection policy live, then measure it on fresh traffic.

    python experiments/read_cluster.py --budget 100 --seeds 3 --workload steady

For each tuner (nes_ensemble's default, CMA-ES, random search) and seed, the policy is tuned on a
running cluster (one evaluation = one window of 100 ticks of live traffic; the queues carry over),
then the recommended policy (the best window seen) is measured on fresh traffic (5 traffic seeds,
a warm-up of 200 ticks, then 10 windows) like the reference policies. Prints and saves
experiments/results/read_cluster_{workload}.{csv,md} and a plot of latency over the tuning run.
"""

from __future__ import annotations

import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from common import RESULTS, run_parallel, save_table  # noqa: E402

import nes_ensemble as ne  # noqa: E402
from nes_ensemble.read_cluster import BOUNDS, REFERENCES, ClusterConfig, LiveObjective, measure  # noqa: E402

TUNERS = ("nes", "cmaes", "random")
FRESH = range(5)


def tune(args: tuple) -> dict:
    tuner, seed, budget, workload = args
    live = LiveObjective(ClusterConfig(workload=workload), seed=seed)
    result = ne.optimize(live, BOUNDS, budget=budget, seed=seed, strategy=tuner)
    latency = measure(result.best_x, "tuned", FRESH, ClusterConfig(workload=workload))
    return {"policy": f"tuned by {tuner}", "seed": seed, "latency": float(latency.mean()),
            "trace": -result.y, "x": np.round(result.best_x, 3).tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workload", default="steady", choices=["steady", "bursty", "hotspot"])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    cfg = ClusterConfig(workload=args.workload)
    runs = run_parallel(tune, [(t, s, args.budget, args.workload) for t in TUNERS for s in range(args.seeds)],
                        args.workers)
    refs = {name: float(measure(None, name, FRESH, cfg).mean()) for name in REFERENCES}
    informed = refs["informed"]
    rows = [{"policy": name, "mean latency (ticks)": v, "vs informed": v / informed, "seeds": "-"}
            for name, v in refs.items()]
    tuned = pd.DataFrame([{k: r[k] for k in ("policy", "seed", "latency")} for r in runs])
    for policy, g in tuned.groupby("policy", sort=False):
        med = float(g.latency.median())
        rows.append({"policy": policy, "mean latency (ticks)": med, "vs informed": med / informed,
                     "seeds": f"median of {len(g)} ({g.latency.min():.3g} - {g.latency.max():.3g})"})
    table = pd.DataFrame(rows)
    name = f"read_cluster_{args.workload}"
    save_table(table, name, f"Read cluster ({args.workload}): mean read latency on fresh traffic",
               "python experiments/read_cluster.py " + " ".join(sys.argv[1:]))
    for r in runs:
        print(r["policy"], "seed", r["seed"], "x =", r["x"])

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for tuner in TUNERS:
        traces = np.array([r["trace"] for r in runs if r["policy"] == f"tuned by {tuner}"])
        smooth = np.array([np.convolve(t, np.ones(10) / 10, mode="valid") for t in traces])
        ax.plot(np.arange(10, traces.shape[1] + 1), np.median(smooth, 0), label=f"{tuner} (median, 10-window mean)")
    for ref, style in zip(("random", "least_queue", "informed"), (":", "--", "-.")):
        ax.axhline(refs[ref], color="0.4", ls=style, lw=1, label=f"{ref} (fresh traffic)")
    ax.set_xlabel("evaluations (windows of live traffic)")
    ax.set_ylabel("mean read latency (ticks)")
    ax.set_title(f"Tuning the replica selection policy live ({args.workload})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(RESULTS, f"{name}.png"), dpi=110)
    print(f"plot: {os.path.join(RESULTS, name + '.png')}")


if __name__ == "__main__":
    main()
