"""Which basin does a Hartmann-6 run end in? Compare with the basin of its best initial design point.

    python experiments/design_basins.py --seeds 20 --runs h6_order_runs.csv

For each seed, the default initial design (36 scrambled Sobol points, as ``optimize`` draws them)
is evaluated and every point is climbed on the true function (L-BFGS-B); the table says whether the
best design point climbs to the global maximum, how many of the 36 do, and, from a saved
``ablation.py`` runs file, whether the run with that seed ended within 0.01 of the optimum.
Saves experiments/results/design_basins.{csv,md}.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import pandas as pd
from common import RESULTS, save_table
from scipy.optimize import minimize

import nes_ensemble as ne
from nes_ensemble.proposers.search import initial_design


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--runs", default="h6_order_runs.csv", help="an ablation.py runs file under results/")
    args = parser.parse_args()
    h6 = ne.make_problem("hartmann6")
    x_star = h6.optimizers[0]
    runs = pd.read_csv(os.path.join(RESULTS, args.runs))

    def climbs_to_global(x0: np.ndarray) -> bool:
        end = minimize(lambda x: -float(h6.evaluate(x[None])[0]), x0, method="L-BFGS-B", bounds=[(0, 1)] * 6).x
        return bool(np.linalg.norm(end - x_star) < 0.1)

    rows = []
    for seed in range(args.seeds):
        design = initial_design(36, 6, "sobol", seed)
        to_global = [climbs_to_global(x) for x in design]
        best = int(np.argmax(h6.evaluate(design)))
        regret = runs.loc[runs.seed == seed, "regret"]
        rows.append({"seed": seed, "best design point climbs to x*": to_global[best],
                     "design points that climb to x*": sum(to_global),
                     "run within 0.01": bool(regret.iloc[0] < 0.01) if len(regret) else None})
    table = pd.DataFrame(rows)
    agree = (table["best design point climbs to x*"] == table["run within 0.01"]).sum()
    print(f"the run's outcome matches its best design point's basin on {agree} of {len(table)} seeds")
    save_table(table, "design_basins", f"Hartmann-6: basin of the best design point against the run ({args.runs})",
               "python experiments/design_basins.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
