"""Tune the diabetes model with Ray Tune, nes_ensemble choosing each trial's config.

    python examples/ray_tune_search.py                 # 40 trials, 2 at a time, on a local Ray
    python examples/ray_tune_search.py --random        # the same with Tune's own (random) search
"""

import argparse
import os
import sys

import ray
from ray import tune

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from diabetes_model import cv_rmse  # noqa: E402

from nes_ensemble.integrations.ray_tune import NESSearch  # noqa: E402

SPACE = {"components": tune.randint(1, 11), "alpha": tune.loguniform(0.001, 100), "gamma": tune.loguniform(1e-4, 1),
         "kernel": tune.choice(["rbf", "laplacian", "polynomial"]), "degree": tune.randint(1, 6)}


def trainable(config: dict) -> dict:
    """One trial: the model of ``config``, its cross-validated RMSE."""
    return {"rmse": cv_rmse(config["components"], config["alpha"], config["gamma"], config["kernel"], config["degree"])}


def tune_model(seed: int = 0, samples: int = 40, concurrent: int = 2, random: bool = False,
                storage: str | None = None) -> tune.ResultGrid:
    """Run the Tune experiment; ``random`` uses Tune's default search instead of NESSearch."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    search = BasicVariantGenerator(random_state=seed) if random else NESSearch(seed=seed)
    tuner = tune.Tuner(trainable, param_space=SPACE, tune_config=tune.TuneConfig(
        search_alg=search, metric="rmse", mode="min", num_samples=samples, max_concurrent_trials=concurrent,
        reuse_actors=True),  # a trial of a tenth of a second would otherwise wait seconds for a fresh worker
        run_config=tune.RunConfig(storage_path=storage, verbose=0))
    return tuner.fit()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--random", action="store_true", help="Tune's default search instead of NESSearch")
    args = parser.parse_args()
    # the trial processes import diabetes_model from this folder
    ray.init(num_cpus=2, runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}})
    best = tune_model(args.seed, args.samples, random=args.random).get_best_result()
    print(f"best RMSE {best.metrics['rmse']:.3f} with {best.config}")
