"""What MLflow tracking costs: the default run with tracking on (a fresh SQLite store) and off, interleaved.

    python experiments/tracking_overhead.py --seeds 3

Each run is `python -m nes_ensemble seed=S` (Hartmann-6, 300 evaluations, strategy nes) in a
subprocess, tracking into one SQLite store created beforehand (creating a fresh store, once, costs
a few seconds more); the table has the median wall time of the whole process and the median ratio on/off
of pairs run back to back. Saves experiments/results/tracking_overhead.{csv,md}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
from common import save_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(seed: int, tracking: bool, folder: str) -> float:
    args = [sys.executable, "-m", "nes_ensemble", f"seed={seed}", "progress=false",
            f"hydra.run.dir={folder}/run-{seed}-{int(tracking)}"]
    args += [f"tracking.uri=sqlite:///{folder}/mlflow.db"] if tracking else ["tracking=off"]
    start = time.perf_counter()
    subprocess.run(args, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        from nes_ensemble.app.tracking import prepare_store

        prepare_store(f"sqlite:///{folder}/mlflow.db", "nes_ensemble")  # a store that exists, as after the first run
        for seed in range(args.seeds):
            off = run(seed, False, folder)
            on = run(seed, True, folder)
            rows.append({"seed": seed, "off s": off, "on s": on, "ratio": on / off})
    runs = pd.DataFrame(rows)
    table = pd.DataFrame([{"runs": len(runs), "median s, tracking off": runs["off s"].median(),
                           "median s, tracking on": runs["on s"].median(),
                           "median ratio on / off": float(np.median(runs.ratio))}])
    save_table(table, "tracking_overhead", "Wall time of the default run with and without MLflow tracking",
               "python experiments/tracking_overhead.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
