"""The Hydra application: ``python -m nes_ensemble [overrides]``.

Wires the config to a Problem and an Optimizer, runs the ask / tell loop with a progress bar,
writes the history and plots into the Hydra run directory and tracks the run in MLflow.
"""

from __future__ import annotations

import os
import sys
import time

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from hydra.experimental.callback import Callback
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from .config import AppConfig, ProblemConfig
from .optimizer import Optimizer, drive
from .plots import convergence_plot
from .problems import Problem, from_callable, import_function, make_problem, noisy
from .tracking import Tracker, default_uri, prepare_store

ConfigStore.instance().store(name="base_config", node=AppConfig)
# the project's conf/ folder (the package is installed in editable mode from the project root)
CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


def build_problem(cfg: ProblemConfig, seed: int) -> Problem:
    """The configured problem: a built-in one by name, or the user's function for ``callable``."""
    if cfg.name == "callable":
        if not cfg.fn:
            raise ValueError("problem=callable needs problem.fn=package.module.function")
        if cfg.bounds is None:
            raise ValueError("problem=callable needs problem.bounds, e.g. 'problem.bounds=[[0,1],[0,1]]'")
        bounds = OmegaConf.to_container(cfg.bounds) if OmegaConf.is_config(cfg.bounds) else cfg.bounds
        problem = from_callable(import_function(cfg.fn), bounds, cfg.batched, cfg.direction, cfg.optimum,
                                name=cfg.fn.rsplit(".", 1)[-1])
        return noisy(problem, cfg.noise_std, seed) if cfg.noise_std else problem
    return make_problem(cfg.name, cfg.dim, cfg.noise_std, seed)


def run_name(cfg: DictConfig, problem: Problem) -> str:
    return cfg.tracking.run_name or f"{cfg.strategy.name}-{problem.name}-k{cfg.ensemble.members}-s{cfg.seed}"


def run(cfg: DictConfig, run_dir: str, project_root: str) -> dict[str, float]:
    """One optimization as configured; returns the summary numbers."""
    import torch

    torch.manual_seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    problem = build_problem(cfg.problem, cfg.seed)
    direction = "maximize" if problem.sign > 0 else "minimize"
    opt = Optimizer(problem.bounds, config=cfg, seed=cfg.seed, direction=direction)
    tracker = None
    if cfg.tracking.enabled:
        tags = {"hydra.overrides": " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else "",
                "run_dir": run_dir, "problem": problem.name, "strategy": cfg.strategy.name}
        if HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN":
            tags["sweep_dir"] = HydraConfig.get().sweep.dir
        tracker = Tracker(default_uri(project_root, cfg.tracking.uri), cfg.tracking.experiment,
                          run_name(cfg, problem), OmegaConf.to_container(cfg, resolve=True), tags)

    start = time.perf_counter()
    bar = tqdm(total=cfg.budget, desc=run_name(cfg, problem), unit="eval", disable=not cfg.progress,
               dynamic_ncols=True, file=sys.stderr)
    def after_round(opt: Optimizer) -> None:
        metrics = opt.metrics()
        metrics.update(_known_truth(problem, opt))
        metrics["evaluations_per_second"] = opt.n_evaluations / (time.perf_counter() - start)
        bar.update(opt.n_evaluations - bar.n)
        bar.set_postfix(best=f"{metrics['best_y']:.5g}")
        if tracker is not None:
            tracker.log_metrics(metrics, step=opt.n_evaluations)

    drive(opt, lambda X: problem.sign * problem.evaluate(X), cfg.budget, after_round)  # in the user's sign
    bar.close()
    seconds = time.perf_counter() - start

    history = opt.history()
    history_path = os.path.join(run_dir, "history.csv")
    history.to_csv(history_path, index=False)
    regret = _known_truth(problem, opt)
    plot_path = convergence_plot(history, problem.optimum_value, os.path.join(run_dir, "convergence.png"),
                                 title=run_name(cfg, problem), sign=problem.sign)
    opt.save(os.path.join(run_dir, "checkpoint.pt"))
    config_path = os.path.join(run_dir, "config.yaml")
    OmegaConf.save(cfg, config_path)
    if tracker is not None:
        tracker.log_metrics({"seconds": seconds}, step=opt.n_evaluations)
        tracker.log_artifacts([history_path, plot_path, config_path])
        tracker.finish()

    best_x, best_y = opt.best
    summary = {"best_y": best_y, "evaluations": opt.n_evaluations, "seconds": seconds, **regret}
    parts = [f"best {best_y:.6g}"]
    if "regret" in regret:
        parts.append(f"regret {regret['regret']:.3g}")
    if "distance" in regret:
        parts.append(f"distance to optimum {regret['distance']:.3g}")
    parts += [f"{opt.n_evaluations} evaluations", f"{seconds:.1f} s", f"run dir {run_dir}"]
    print(f"{run_name(cfg, problem)}: " + ", ".join(parts) + f"\nbest x = {np.array2string(best_x, precision=5)}")
    return summary


def _known_truth(problem: Problem, opt: Optimizer) -> dict[str, float]:
    best_x, _ = opt.best
    out = {}
    if best_x is not None and problem.optimum_value is not None:
        out["regret"] = problem.regret(best_x)
    if best_x is not None and problem.optimizers is not None:
        out["distance"] = problem.distance(best_x)
    return out


class PrepareStore(Callback):
    """Hydra callback: create the MLflow store and experiment before a sweep's jobs start in parallel."""

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        if config.tracking.enabled:
            try:
                prepare_store(default_uri(os.getcwd(), config.tracking.uri), config.tracking.experiment)
            except Exception as err:  # the jobs will report tracking problems themselves; never stop a sweep
                print(f"nes_ensemble: could not prepare the MLflow store ({err})", file=sys.stderr)


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        summary = run(cfg, run_dir, hydra.utils.get_original_cwd())
    except ValueError as err:  # a user error: one clear line, no traceback wall
        print(f"nes_ensemble: error: {err}", file=sys.stderr)
        sys.exit(2)
    return float(summary.get("regret", -summary["best_y"]))


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
