"""A Hydra app, unchanged by tuning: it fits the model of its config and returns the cross-validated error.

    python train.py                                   # one run of the config's setting
    python train.py -m hydra.sweeper.budget=40        # tune it with nes_ensemble (the space: conf/config.yaml)
"""

import os
import sys

import hydra
from omegaconf import DictConfig

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from diabetes_model import cv_rmse  # noqa: E402


@hydra.main(version_base=None, config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    m = cfg.model
    rmse = cv_rmse(m.components, m.alpha, m.gamma, m.kernel, m.degree)
    print(f"cross-validated RMSE {rmse:.3f}")
    return rmse  # what a sweeper minimizes


if __name__ == "__main__":
    main()
