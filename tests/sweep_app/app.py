"""A tiny Hydra app for the sweeper's tests: returns a value of its settings, records each finished job."""

import json
import math
import os
import time

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig


@hydra.main(version_base=None, config_path=".", config_name="config")
def main(cfg: DictConfig) -> float:
    time.sleep(cfg.sleep)
    if cfg.opt == "crash":
        raise RuntimeError("this setting crashes the app")
    value = (math.log10(cfg.lr) + 2.5) ** 2 + 0.1 * (cfg.layers - 3) ** 2 + (0.0 if cfg.opt == "adam" else 1.0)
    if cfg.record:
        with open(cfg.record, "a") as f:  # one line per job that finished, as the test counts them
            f.write(json.dumps({"job": HydraConfig.get().job.num, "pid": os.getpid(), "lr": cfg.lr,
                                "layers": cfg.layers, "opt": cfg.opt, "value": value}) + "\n")
    return value


if __name__ == "__main__":
    main()
