"""The Hydra application: ``python -m nes_ensemble [overrides]``.

Wires the config to a Problem and an Optimizer, runs the ask / tell loop with a progress bar,
writes the history and plots into the Hydra run directory and tracks the run in MLflow.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from .config import AppConfig, ProblemConfig
from .evaluators import drive_parallel
from .optimizer import EvaluationError, Optimizer, drive
from .plots import convergence_plot, lineage_plot
from .problems import Problem, from_callable, import_function, make_problem, noisy
from .remote import Objective
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
    return make_problem(cfg.name, cfg.dim, cfg.noise_std, seed, cfg.workload)


def run_name(cfg: DictConfig, problem: Problem) -> str:
    return cfg.tracking.run_name or f"{cfg.strategy.name}-{problem.name}-k{cfg.ensemble.members}-s{cfg.seed}"


CHECKPOINT, JOURNAL, CONFIG = "checkpoint.pt", "evaluations.jsonl", "config.yaml"


def resume_config(cfg: DictConfig) -> DictConfig:
    """The saved config of the run directory ``cfg.resume`` (the interrupted run's own settings)."""
    run_dir = os.path.abspath(cfg.resume)
    for name in (CONFIG, CHECKPOINT):
        if not os.path.exists(os.path.join(run_dir, name)):
            raise ValueError(f"resume={cfg.resume!r}: {os.path.join(run_dir, name)} not found; give the Hydra run "
                             "directory of the interrupted run (it holds config.yaml and checkpoint.pt)")
    saved = OmegaConf.load(os.path.join(run_dir, CONFIG))
    saved.resume = run_dir
    saved.progress = cfg.progress
    return saved


def run(cfg: DictConfig, run_dir: str, project_root: str) -> dict[str, float]:
    """One optimization as configured (or the continuation of ``cfg.resume``); returns the summary numbers."""
    import torch

    if cfg.resume:
        cfg = resume_config(cfg)
        run_dir = cfg.resume
    torch.manual_seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    problem = build_problem(cfg.problem, cfg.seed)
    direction = "maximize" if problem.sign > 0 else "minimize"
    checkpoint = os.path.join(run_dir, CHECKPOINT)
    if cfg.resume:
        opt = Optimizer.load(checkpoint)
        print(f"nes_ensemble: resuming {run_dir} at {opt.n_evaluations} evaluations", file=sys.stderr)
    else:
        os.makedirs(run_dir, exist_ok=True)
        OmegaConf.save(cfg, os.path.join(run_dir, CONFIG))
        opt = Optimizer(problem.bounds, config=cfg, seed=cfg.seed, direction=direction,
                        journal=os.path.join(run_dir, JOURNAL))
        opt.save(checkpoint)
    tracker = _tracker(cfg, problem, run_dir, project_root) if cfg.tracking.enabled else None

    start = time.perf_counter() - (opt.seconds if cfg.resume else 0.0)
    bar = tqdm(total=cfg.budget, initial=opt.n_evaluations, desc=run_name(cfg, problem), unit="eval",
               disable=not cfg.progress, dynamic_ncols=True, file=sys.stderr)

    logged = [0]  # events handed to the tracker so far (a resumed run re-sends them; the tracker skips known ones)

    def after_round(opt: Optimizer) -> None:
        opt.seconds = time.perf_counter() - start
        opt.save(checkpoint)
        if tracker is not None:
            tracker.log_events(opt.events[logged[0]:])
            logged[0] = len(opt.events)
        metrics = opt.metrics()
        metrics.update(_known_truth(problem, opt))
        metrics["evaluations_per_second"] = opt.n_evaluations / max(opt.seconds, 1e-9)
        metrics["elapsed_seconds"] = opt.seconds
        bar.update(opt.n_evaluations - bar.n)
        bar.set_postfix(best=f"{metrics['best_y']:.5g}")
        if tracker is not None:
            tracker.log_metrics(metrics, step=opt.n_evaluations)

    status = "FINISHED"
    with _interrupts(opt):
        try:
            if cfg.evaluator.name == "inline":
                drive(opt, lambda X: problem.sign * problem.evaluate(X), cfg.budget, after_round)  # in the user's sign
            else:
                drive_parallel(opt, Objective(problem), cfg.budget, after_round)
        except KeyboardInterrupt:
            status = "KILLED"
        except EvaluationError as err:
            status, failure = "FAILED", err
    bar.close()
    seconds = time.perf_counter() - start
    opt.seconds = seconds
    opt.save(checkpoint)

    history = opt.history()
    history_path = os.path.join(run_dir, "history.csv")
    history.to_csv(history_path, index=False)
    regret = _known_truth(problem, opt)
    plot_path = convergence_plot(history, problem.optimum_value, os.path.join(run_dir, "convergence.png"),
                                 title=run_name(cfg, problem), sign=problem.sign)
    lineage_path = os.path.join(run_dir, "lineage.json")
    with open(lineage_path, "w") as f:
        json.dump(opt.events, f, indent=1)
    artifacts = [history_path, plot_path, lineage_path, os.path.join(run_dir, CONFIG), os.path.join(run_dir, JOURNAL)]
    if any(e["event"] == "birth" for e in opt.events):
        artifacts.append(lineage_plot(opt.events, os.path.join(run_dir, "lineage.png"),
                                      f"lineage of {run_name(cfg, problem)}", opt.n_evaluations))
    if tracker is not None:
        tracker.log_events(opt.events[logged[0]:])
        tracker.log_metrics({"seconds": seconds}, step=opt.n_evaluations)
        tracker.log_artifacts(artifacts)
        tracker.finish(status)
    if status == "KILLED":
        print(f"nes_ensemble: interrupted after {opt.n_evaluations} evaluations, all saved in {run_dir}\n"
              f"resume with: python -m nes_ensemble resume={run_dir}", file=sys.stderr)
        sys.exit(130)
    if status == "FAILED":
        print(f"nes_ensemble: error: {failure}\nsaved in {run_dir}; resume (e.g. with a larger "
              f"evaluator.max_failures after fixing the objective) with: python -m nes_ensemble resume={run_dir}",
              file=sys.stderr)
        sys.exit(3)

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


def _tracker(cfg: DictConfig, problem: Problem, run_dir: str, project_root: str) -> Tracker:
    """The MLflow run of this optimization: a new one, or on resume the interrupted run itself (its id is in
    the run directory's mlflow_run.json, which the tracker writes)."""
    tags = {"hydra.overrides": " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else "",
            "run_dir": run_dir, "problem": problem.name, "strategy": cfg.strategy.name}
    if HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN":
        tags["sweep_dir"] = HydraConfig.get().sweep.dir
    return Tracker(default_uri(project_root, cfg.tracking.uri), cfg.tracking.experiment, run_name(cfg, problem),
                   OmegaConf.to_container(cfg, resolve=True), tags, run_dir=run_dir, resume=bool(cfg.resume))


class _interrupts:
    """SIGINT and SIGTERM stop the run cleanly: at once while the objective runs, else after the optimizer's
    own bookkeeping (ask / tell / training) finishes, so the checkpoint written afterwards is consistent."""

    def __init__(self, opt: Optimizer):
        self.opt = opt

    def __enter__(self) -> None:
        self.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in self.previous:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.opt.busy:
            self.opt.stop_requested = True
        else:
            raise KeyboardInterrupt

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


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
