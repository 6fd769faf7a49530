"""The Hydra application: ``python -m nes_ensemble [overrides]``.

Wires the config to a Problem and an Optimizer, runs the ask / tell loop with a progress bar,
writes the history and plots into the Hydra run directory and tracks the run in MLflow.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import sys
import time
from typing import Any, Callable

import hydra
import numpy as np
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..config import AppConfig, ProblemConfig, check_budget, check_seed
from ..engine.checkpoint import UnsafeCheckpointError
from ..engine.loop import EvaluationError, StopFlag
from ..engine.loop import run as run_loop
from ..engine.optimizer import Optimizer
from ..engine.remote import Objective
from ..members.allocation import KIND_OF_SOURCE
from ..problems import Problem, from_callable, import_function, make_problem, noisy
from ..space import Space
from .plots import convergence_plot, lineage_plot
from .progress import Progress
from .tracking import Tracker, default_uri, prepare_store, recorded_run

ConfigStore.instance().store(name="base_config", node=AppConfig)
log = logging.getLogger("nes_ensemble")  # app.log in the run directory (conf/config.yaml sends it there only)
# the configs travel inside the package (a wheel carries them); conf/ at the project root points here
CONF_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")


CALLABLE_ONLY = {"fn": "", "bounds": None, "space": None, "batched": False, "direction": "maximize", "optimum": None}


def build_problem(cfg: ProblemConfig, seed: int) -> Problem:
    """The configured problem: a built-in one by name, or the user's function for ``callable``. A setting that
    does not apply to the chosen problem is refused rather than ignored."""
    if cfg.name != "callable":
        given = [k for k, default in CALLABLE_ONLY.items() if cfg.get(k) != default]
        if cfg.name != "read_cluster":
            given += [k for k, default in (("workload", "steady"), ("typed", False)) if cfg.get(k) != default]
        if given:
            owner = "read_cluster" if given[0] in ("workload", "typed") else "callable"
            raise ValueError(f"problem.{given[0]} does not apply to problem={cfg.name} (it has its own); it is a "
                             f"setting of problem={owner}")
    if cfg.name == "callable":
        if not cfg.fn:
            raise ValueError("problem=callable needs problem.fn=package.module.function")
        if cfg.bounds is None and cfg.space is None:
            raise ValueError("problem=callable needs problem.bounds, e.g. 'problem.bounds=[[0,1],[0,1]]', or "
                             "problem.space (named parameters; see conf/problem/callable.yaml)")
        bounds = OmegaConf.to_container(cfg.bounds) if OmegaConf.is_config(cfg.bounds) else cfg.bounds
        if cfg.space is not None:
            spec = OmegaConf.to_container(cfg.space) if OmegaConf.is_config(cfg.space) else cfg.space
            if not isinstance(spec, dict):
                raise ValueError(f"problem.space={spec!r}: give name: {{type: float | int | categorical, ...}}")
            bounds = Space.from_dict(spec)
        problem = from_callable(import_function(cfg.fn), bounds, cfg.batched, cfg.direction, cfg.optimum,
                                name=cfg.fn.rsplit(".", 1)[-1])
        return noisy(problem, cfg.noise_std, seed) if cfg.noise_std else problem
    return make_problem(cfg.name, cfg.dim, cfg.noise_std, seed, cfg.workload, cfg.typed)


def run_name(cfg: DictConfig, problem: Problem) -> str:
    """The MLflow run name: ``tracking.run_name``, else what the run is, e.g. nes-hartmann6-k10-s3."""
    from ..members.ensemble import NETWORK_STRATEGIES

    members = f"-k{cfg.ensemble.members}" if cfg.strategy.name in NETWORK_STRATEGIES else ""  # a population's size
    return cfg.tracking.run_name or f"{cfg.strategy.name}-{problem.name}{members}-s{cfg.seed}"


CHECKPOINT, JOURNAL, CONFIG = "checkpoint.pt", "evaluations.jsonl", "config.yaml"
SWEPT = ".swept_keys.json"  # in a sweep folder: the keys the sweep varies
METRICS = "metrics.jsonl"  # the run's numbers after every round, one JSON line each (what MLflow gets, without it)


def resume_config(cfg: DictConfig, overrides: list[str] | None = None) -> DictConfig:
    """The saved config of the run directory ``cfg.resume`` (the interrupted run's own settings). Of the command
    line's ``overrides``, ``budget=`` extends the run (saved in its config.yaml) and ``progress=`` applies; the
    others are ignored with a note, since a run keeps the settings it started with."""
    run_dir = os.path.abspath(cfg.resume)
    for names in ((CONFIG,), (CHECKPOINT, JOURNAL)):
        if not any(os.path.exists(os.path.join(run_dir, name)) for name in names):
            raise ValueError(f"resume={cfg.resume!r}: {os.path.join(run_dir, names[0])} not found; give the Hydra "
                             "run directory of the interrupted run (it holds config.yaml and checkpoint.pt)")
    try:
        saved = OmegaConf.load(os.path.join(run_dir, CONFIG))
        if not isinstance(saved, DictConfig) or "problem" not in saved:
            raise ValueError("not a run's settings")
    except Exception as err:
        raise ValueError(f"resume={cfg.resume!r}: {os.path.join(run_dir, CONFIG)} is damaged ({err}); restore it "
                         "(the run's MLflow parameters and .hydra/config.yaml hold the same settings)") from None
    saved.resume = run_dir
    saved.progress = cfg.progress
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides or []]
    ignored = [o for o, k in zip(overrides or [], keys) if k not in ("resume", "budget", "progress")]
    if ignored:
        print(f"nes_ensemble: resume keeps the run's own settings; ignored: {' '.join(ignored)}", file=sys.stderr)
    if "budget" in keys:
        saved.budget = cfg.budget  # written to config.yaml once the run is known to hold no more (see _open)
    return saved


def _save_config(cfg: DictConfig, run_dir: str) -> None:
    """Write config.yaml of ``run_dir`` atomically (a kill never leaves half of it)."""
    tmp = os.path.join(run_dir, f".{CONFIG}.tmp")
    OmegaConf.save(cfg, tmp)
    os.replace(tmp, os.path.join(run_dir, CONFIG))


class RunLock:
    """An exclusive lock on a run directory for as long as a process runs it: a second run or resume of the
    same folder refuses in one line instead of evaluating points twice. The OS drops it when the process
    ends, however it ends."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, ".lock")

    def __enter__(self) -> "RunLock":
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise ValueError(f"{os.path.dirname(self.path)} is being run by {holder}; wait for it to end "
                             "(or stop it) before resuming it") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()}")
        self.file.flush()
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def run(cfg: DictConfig, run_dir: str, project_root: str) -> dict[str, float]:
    """One optimization as configured (or the continuation of ``cfg.resume``); returns the summary numbers."""
    if cfg.resume:
        cfg = resume_config(cfg, list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None)
        run_dir = cfg.resume
    with RunLock(run_dir), _logged_to(run_dir):
        return _run_locked(cfg, run_dir, project_root)


class _logged_to:
    """The app's log lines also go to ``run_dir``/app.log when Hydra's log file is elsewhere (a resumed run)."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, "app.log")

    def __enter__(self) -> None:
        root = logging.getLogger()
        self.handler = None
        if not any(getattr(h, "baseFilename", None) == self.path for h in root.handlers):
            self.handler = logging.FileHandler(self.path)
            self.handler.setFormatter(logging.Formatter("[%(asctime)s][%(levelname)s] %(message)s"))
            log.addHandler(self.handler)
            log.setLevel(logging.INFO)

    def __exit__(self, *exc: object) -> None:
        if self.handler is not None:
            log.removeHandler(self.handler)
            self.handler.close()


def _run_locked(cfg: DictConfig, run_dir: str, project_root: str) -> dict[str, float]:
    import torch

    check_budget(cfg.budget)
    check_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    problem = build_problem(cfg.problem, cfg.seed)
    # a stop asked for while the run is set up (checkpoint read, MLflow's store created and migrated) is remembered,
    # not raised: raised inside a library, a broad ``except`` there could swallow it and the run would go on
    asked: list[int] = []
    with _on_interrupt(lambda signum, frame: asked.append(signum)):
        opt = _open(cfg, problem, run_dir)
        tracker = _tracker(cfg, problem, run_dir, project_root) if cfg.tracking.enabled else None
        report = _Report(cfg, problem, opt, run_dir, tracker)
    status, failure = "FINISHED", None
    stop = StopFlag()
    # at once while the objective runs, else after the optimizer's own bookkeeping (ask / tell / training), so the
    # checkpoint written afterwards is consistent
    with _on_interrupt(lambda signum, frame: stop.request()):
        try:
            if asked:  # Ctrl-C while the run was set up: stopped before its first evaluation, its MLflow run closed
                raise KeyboardInterrupt
            run_loop(opt, Objective(problem), cfg.budget, report.after_round, stop=stop)  # in the user's sign
        except KeyboardInterrupt:
            status = "KILLED"
        except EvaluationError as err:
            status, failure = "FAILED", err
        except OSError as err:  # the run folder: full, read-only, gone
            status, failure = "FAILED", err
    seconds = report.close(status)
    failure = failure or report.storage_error
    if isinstance(failure, OSError):
        _say(f"nes_ensemble: error: cannot write in {run_dir}: {failure.strerror or failure} "
             f"({failure.filename or 'a file of the run'}); the evaluations written are in "
             f"{os.path.join(run_dir, JOURNAL)}. Make room (or make it writable), then resume with: "
             f"python -m nes_ensemble resume={run_dir}", logging.ERROR)
        sys.exit(4)
    if status == "KILLED":
        _say(f"nes_ensemble: interrupted after {opt.n_evaluations} evaluations, all saved in {run_dir}\n"
             f"resume with: python -m nes_ensemble resume={run_dir}", logging.WARNING)
        sys.exit(130)
    if status == "FAILED":
        _say(f"nes_ensemble: error: {failure}\nsaved in {run_dir}; resume (e.g. with a larger "
             f"evaluator.max_failures after fixing the objective) with: python -m nes_ensemble resume={run_dir}",
             logging.ERROR)
        sys.exit(3)
    return _summary(cfg, problem, opt, seconds, run_dir)


def _open(cfg: DictConfig, problem: Problem, run_dir: str) -> Optimizer:
    """The run's optimizer: loaded from the run directory on resume, else new (its config and first checkpoint
    written before any evaluation)."""
    checkpoint = os.path.join(run_dir, CHECKPOINT)
    if cfg.resume:
        opt = _load(cfg, problem, run_dir)
        if cfg.problem.name != "callable" and opt.direction != _direction(problem):
            problem.sign = -problem.sign  # a run of 0.1 maximized a minimized test function's negation: go on so
        _check_unedited(cfg, problem, opt, run_dir)
        if opt.n_evaluations > cfg.budget:
            raise ValueError(f"resume={run_dir} budget={cfg.budget}: the run holds {opt.n_evaluations} evaluations "
                             "already; give a larger budget to extend it")
        if opt.cfg.budget != cfg.budget:  # a budget extended on resume: plan the rest of the run for it
            opt.cfg.budget = cfg.budget
            saved = OmegaConf.load(os.path.join(run_dir, CONFIG))
            saved.budget = cfg.budget
            _save_config(saved, run_dir)
        _say(f"nes_ensemble: resuming {run_dir} at {opt.n_evaluations} of {cfg.budget} evaluations")
        return opt
    os.makedirs(run_dir, exist_ok=True)
    _save_config(cfg, run_dir)
    opt = Optimizer(_space(problem), config=cfg, seed=cfg.seed, direction=_direction(problem),
                    journal=os.path.join(run_dir, JOURNAL))
    opt.save(checkpoint)
    overrides = " ".join(HydraConfig.get().overrides.task) if HydraConfig.initialized() else ""
    log.info("%s: %s, %s, budget %d, seed %d, run dir %s%s", run_name(cfg, problem), problem.name, cfg.strategy.name,
             cfg.budget, cfg.seed, run_dir, f" (overrides: {overrides})" if overrides else "")
    return opt


def _say(text: str, level: int = logging.INFO) -> None:
    """A message for the user on stderr, and into app.log."""
    print(text, file=sys.stderr)
    log.log(level, text.replace("\n", "; "))


def _load(cfg: DictConfig, problem: Problem, run_dir: str) -> Optimizer:
    """The interrupted run's optimizer: from its checkpoint, or rebuilt from its journal when the checkpoint is
    damaged (the journal is the record of what was evaluated)."""
    checkpoint, journal = os.path.join(run_dir, CHECKPOINT), os.path.join(run_dir, JOURNAL)
    try:
        return Optimizer.load(checkpoint, journal=journal)
    except UnsafeCheckpointError as err:  # not rebuilt over: whoever made the folder should know first
        raise ValueError(f"{err}. If the run is yours, delete {checkpoint} and resume again to rebuild the run "
                         f"from {journal}") from None
    except (ValueError, FileNotFoundError) as err:
        if not os.path.exists(journal):
            raise
        _say(f"nes_ensemble: {err}\nnes_ensemble: rebuilding the run from {journal}", logging.WARNING)
    opt = Optimizer.rebuild(_space(problem), journal, config=cfg, seed=cfg.seed, direction=_direction(problem))
    opt.save(checkpoint)
    return opt


def _check_unedited(cfg: DictConfig, problem: Problem, opt: Optimizer, run_dir: str) -> None:
    """A ValueError when the run folder's config.yaml no longer says what its checkpoint was made with (edited by
    hand): resuming would run one setting while the run's name and summary show another."""
    space = problem.space.to_dict() if problem.space is not None else None
    saved_space = opt.box.to_dict() if isinstance(opt.box, Space) else None
    differ = [(what, mine, theirs) for what, mine, theirs in (
        ("seed", cfg.seed, opt.seed), ("strategy", cfg.strategy.name, opt.cfg.strategy.name),
        ("direction", _direction(problem), opt.direction),
        ("bounds" if space is None else "space", space if space is not None else problem.bounds.tolist(),
         saved_space if saved_space is not None else opt.bounds.tolist())) if mine != theirs]
    if differ:
        what, mine, theirs = differ[0]
        raise ValueError(f"resume={run_dir}: {CONFIG} says {what} {mine} but the run was made with {theirs} (the file "
                         f"was edited after the run started); restore it, or start a new run with the new settings")


def _space(problem: Problem) -> Any:
    return problem.space if problem.space is not None else problem.bounds


def _direction(problem: Problem) -> str:
    return "maximize" if problem.sign > 0 else "minimize"


class _Report:
    """After every round: the checkpoint, the progress bar, and metrics and lineage for the tracker. At the end:
    the last checkpoint, the history, plots and lineage in the run directory, and the tracker's last words."""

    def __init__(self, cfg: DictConfig, problem: Problem, opt: Optimizer, run_dir: str, tracker: Tracker | None):
        self.cfg, self.problem, self.opt, self.run_dir, self.tracker = cfg, problem, opt, run_dir, tracker
        self.checkpoint = os.path.join(run_dir, CHECKPOINT)
        self.start = time.perf_counter() - (opt.seconds if cfg.resume else 0.0)
        self.bar = Progress(cfg.budget, run_name(cfg, problem), opt.n_evaluations) if cfg.progress else None
        self.metrics = open(os.path.join(run_dir, METRICS), "a")
        self.storage_error: OSError | None = None
        self.steps: list[int] = []  # the evaluations at which rounds ended

    def _gaps(self) -> tuple[list[int], list[float]]:
        """log10 of (the run's best - the best so far) after each round, in the maximized sense."""
        best = self.opt.pool.y
        ok = np.where(np.isfinite(best), best, -np.inf)
        so_far = np.maximum.accumulate(ok) if len(ok) else ok
        final = float(so_far[-1]) if len(so_far) else -np.inf
        steps = [int(s) for s in self.steps if 0 < s <= len(so_far)]
        gaps = [float(np.log10(max(final - so_far[s - 1], 1e-12))) if np.isfinite(so_far[s - 1]) else float("nan")
                for s in steps]
        return steps, gaps

    def written(self) -> list[str]:
        """The files a run leaves that hold its evaluations and settings."""
        return [os.path.join(self.run_dir, name) for name in (CONFIG, JOURNAL, METRICS)]

    def after_round(self, opt: Optimizer) -> None:
        """Checkpoint, progress and tracking after a round of evaluations."""
        opt.seconds = time.perf_counter() - self.start
        self.steps.append(opt.n_evaluations)
        opt.save(self.checkpoint)
        if self.tracker is not None:
            self.tracker.log_events(opt.events)
        metrics = opt.metrics()
        metrics.update(_known_truth(self.problem, opt))
        metrics["evaluations_per_second"] = opt.n_evaluations / max(opt.seconds, 1e-9)
        metrics["elapsed_seconds"] = opt.seconds
        if self.bar is not None:
            self.bar.update(opt.n_evaluations, metrics["best_y"] if np.isfinite(metrics["best_y"]) else None)
        self.metrics.write(json.dumps({"evaluations": opt.n_evaluations, **metrics}, default=float) + "\n")
        self.metrics.flush()
        log.info("%d of %d evaluations, best %.6g%s", opt.n_evaluations, self.cfg.budget, metrics["best_y"],
                 f", regret {metrics['regret']:.3g}" if "regret" in metrics else "")
        if self.tracker is not None:
            self.tracker.log_metrics(metrics, step=opt.n_evaluations)

    def close(self, status: str) -> float:
        """Write everything the run leaves behind; returns its wall time in seconds."""
        if self.bar is not None:
            self.bar.close()
        try:
            self.metrics.close()
        except OSError as err:
            self.storage_error = err
        opt = self.opt
        seconds = time.perf_counter() - self.start
        opt.seconds = seconds
        try:
            opt.save(self.checkpoint)
            artifacts = _write_outputs(opt, self.cfg, self.problem, self.run_dir)
        except OSError as err:  # a full or read-only run folder: the tracker still closes the run
            self.storage_error, artifacts = err, [a for a in self.written() if os.path.exists(a)]
        if self.tracker is not None:
            self.tracker.log_events(opt.events)
            self.tracker.log_metrics({"seconds": seconds, **{f"proposed_by_{kind.replace(' ', '_')}": float(n)
                                                             for kind, n in proposed_by(opt).items()}},
                                     step=opt.n_evaluations)
            if self.problem.optimum_value is None:  # the regret's stand-in: the gap to the best this run saw
                self.tracker.log_series("log10_gap_to_best", *self._gaps())
            self.tracker.log_artifacts(artifacts)
            self.tracker.finish(status)
        return seconds


def _write_outputs(opt: Optimizer, cfg: DictConfig, problem: Problem, run_dir: str) -> list[str]:
    """history.csv, convergence.png, lineage.json (and lineage.png when members evolve); returns every artifact."""
    history = opt.history()
    history_path = os.path.join(run_dir, "history.csv")
    history.to_csv(history_path, index=False)
    plot_path = convergence_plot(history, problem.optimum_value, os.path.join(run_dir, "convergence.png"),
                                 title=run_name(cfg, problem), sign=problem.sign)
    lineage_path = os.path.join(run_dir, "lineage.json")
    with open(lineage_path, "w") as f:
        json.dump(opt.events, f, indent=1)
    artifacts = [history_path, plot_path, lineage_path, os.path.join(run_dir, CONFIG), os.path.join(run_dir, JOURNAL),
                 os.path.join(run_dir, METRICS)]
    if any(e["event"] == "birth" for e in opt.events):
        artifacts.append(lineage_plot(opt.events, os.path.join(run_dir, "lineage.png"),
                                      f"lineage of {run_name(cfg, problem)}", opt.n_evaluations))
    return artifacts


def _summary(cfg: DictConfig, problem: Problem, opt: Optimizer, seconds: float, run_dir: str) -> dict[str, float]:
    """Print the run's one-line summary and return its numbers."""
    regret = _known_truth(problem, opt)
    best_x, best_y = opt.best
    if best_x is None:  # every evaluation failed: nothing to recommend, and the run says so
        reasons = [r for r in opt.pool.reasons if r]
        text = (f"{run_name(cfg, problem)}: no evaluation succeeded ({opt.n_evaluations} failed"
                f"{'; last: ' + reasons[-1] if reasons else ''}), {seconds:.1f} s, run dir {run_dir}")
        summary = {"best_y": None, "evaluations": opt.n_evaluations, "seconds": seconds}
        _write_summary(cfg, problem, run_dir, None, summary)
        _say(f"{text}\nfix the objective, then resume with a larger budget: python -m nes_ensemble "
             f"resume={run_dir} budget={cfg.budget + opt.n_evaluations}", logging.ERROR)
        sys.exit(3)
    parts = [f"best {best_y:.6g}"]
    if "regret" in regret:
        parts.append(f"regret {regret['regret']:.3g}")
    if "distance" in regret:
        parts.append(f"distance to optimum {regret['distance']:.3g}")
    kinds = proposed_by(opt)
    by = f" ({', '.join(f'{kind} {n}' for kind, n in kinds.items() if n)})" if kinds else ""
    parts += [f"{opt.n_evaluations} evaluations{by}", f"{seconds:.1f} s", f"run dir {run_dir}"]
    mlflow_run = recorded_run(run_dir) if cfg.tracking.enabled else None
    if mlflow_run:
        parts.append(f"MLflow run {mlflow_run}")
    shown = best_x if isinstance(best_x, dict) else np.array2string(best_x, precision=5)
    what = "setting" if isinstance(best_x, dict) else "x"
    text = f"{run_name(cfg, problem)}: " + ", ".join(parts) + f"\nbest {what} = {shown}"
    print(text)
    log.info(text.replace("\n", "; "))
    summary = {"best_y": best_y, "evaluations": opt.n_evaluations, "seconds": seconds, **regret,
               **({"proposed_by": kinds} if kinds else {})}
    _write_summary(cfg, problem, run_dir, mlflow_run, summary)
    return summary


def proposed_by(opt: Optimizer) -> dict[str, int]:
    """How many evaluations each kind of member proposed (the design and repeats apart); empty for a baseline."""
    counts = {"design": 0, "GP members": 0, "networks": 0}
    for p in opt.pool.provenance:
        kind = KIND_OF_SOURCE.get(p.source)
        counts["GP members" if kind == "gp" else kind or "design"] += 1
    return counts if counts["GP members"] or counts["networks"] else {}


def _write_summary(cfg: DictConfig, problem: Problem, run_dir: str, mlflow_run: str | None,
                   summary: dict[str, Any]) -> None:
    with open(os.path.join(run_dir, "summary.json"), "w") as f:
        json.dump({"run_name": run_name(cfg, problem), "problem": problem.name, "strategy": cfg.strategy.name,
                   "seed": cfg.seed, "budget": cfg.budget, "mlflow_run": mlflow_run, **summary}, f, indent=1)


def _tracker(cfg: DictConfig, problem: Problem, run_dir: str, project_root: str) -> Tracker:
    """The MLflow run of this optimization: a new one, or on resume the interrupted run itself (its id is in
    the run directory's mlflow_run.json, which the tracker writes)."""
    from .sweep import sweep_id

    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    tags = {"hydra.overrides": " ".join(overrides), "run_dir": run_dir, "problem": problem.name,
            "strategy": cfg.strategy.name}
    name = run_name(cfg, problem)
    if HydraConfig.initialized() and HydraConfig.get().mode.name == "MULTIRUN":
        folder = os.path.abspath(os.path.join(hydra.utils.get_original_cwd(), HydraConfig.get().sweep.dir))
        tags["sweep_dir"], tags["sweep_id"] = folder, sweep_id(folder)
        if not cfg.tracking.run_name:  # the swept settings the name does not say, so that jobs differ by name
            try:
                with open(os.path.join(folder, SWEPT)) as f:
                    swept = set(json.load(f)) - {"strategy", "seed", "problem", "problem.dim"}
            except (OSError, ValueError, TypeError):
                swept = set()
            extra = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in swept]
            name = " ".join([name, *extra])[:250]
    return Tracker(default_uri(project_root, cfg.tracking.uri), cfg.tracking.experiment, name,
                   OmegaConf.to_container(cfg, resolve=True), tags, run_dir=run_dir, resume=bool(cfg.resume),
                   all_forks=cfg.tracking.all_forks)


class _on_interrupt:
    """SIGINT and SIGTERM call ``handler`` while the block runs; the previous handlers come back after it."""

    def __init__(self, handler: Callable[[int, Any], None]):
        self.handler = handler

    def __enter__(self) -> None:
        self.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in self.previous:
            signal.signal(sig, self.handler)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _known_truth(problem: Problem, opt: Optimizer) -> dict[str, float]:
    best_x, _ = opt.best
    if best_x is not None and problem.space is not None:
        best_x = problem.space.accept(best_x)[0]
    out = {}
    if best_x is not None and problem.optimum_value is not None:
        out["regret"] = problem.regret(best_x)
        out["log10_regret"] = float(np.log10(max(out["regret"], 1e-12)))  # tells runs apart once all are near 0
    if best_x is not None and problem.optimizers is not None:
        out["distance"] = problem.distance(best_x)
    return out


class Sweep(Callback):
    """Hydra callback of a multirun: creates the MLflow store before the jobs start in parallel, and when they
    have ended prints the sweep summary (strategy x problem, see ``sweep.py``), writes it into the sweep
    directory and records it as a summary run in the experiment (the table as its description, the plot and
    table files as artifacts, the medians as metrics)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: object) -> None:
        """Create the store before the jobs start, and note which keys the sweep varies (the jobs' run names
        carry those beyond strategy, problem and seed)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        try:
            parsed = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
            swept = [o.get_key_element() for o in parsed if o.is_sweep_override()]
            folder = os.path.abspath(str(config.hydra.sweep.dir))
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, SWEPT), "w") as f:
                json.dump(swept, f)
        except Exception:  # names are a convenience: a sweep never stops for them
            pass
        if config.tracking.enabled:
            try:
                prepare_store(default_uri(os.getcwd(), config.tracking.uri), config.tracking.experiment)
            except Exception as err:  # the jobs will report tracking problems themselves; never stop a sweep
                print(f"nes_ensemble: could not prepare the MLflow store ({err})", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        """Summarize the sweep's finished jobs."""
        from .sweep import markdown, record, summarize

        folder = os.path.abspath(str(config.hydra.sweep.dir))
        df, paths = summarize(folder, folder)
        if df.empty:
            print(f"nes_ensemble: no job of the sweep in {folder} finished; no summary", file=sys.stderr)
            return
        table = markdown(df)
        line = f"sweep summary of {df.groupby(['problem', 'strategy']).seeds.first().sum()} jobs ({folder})"
        print(f"\n{line}:\n{table}\nsaved in {folder}/summary.md, summary.csv, summary.png")
        if config.tracking.enabled:
            run_id = record(df, paths, folder, default_uri(os.getcwd(), config.tracking.uri),
                            config.tracking.experiment, f"{line}:\n\n{table}\n")
            print(f"MLflow run {run_id} (experiment {config.tracking.experiment})")


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> float:
    logging.raiseExceptions = False  # app.log on a full disk: lose the log line, not the run (nor print a traceback)
    run_dir = HydraConfig.get().runtime.output_dir
    try:
        return _main_of(cfg, run_dir)
    finally:
        if cfg.resume or not os.path.exists(os.path.join(run_dir, CONFIG)):
            _tidy(run_dir)


def _tidy(folder: str) -> None:
    """Remove a Hydra run folder that holds nothing of a run (a resume works in the run's own folder; a start refused
    before its first evaluation leaves nothing worth keeping), and its date folder and outputs/ if now empty."""
    try:
        if not set(os.listdir(folder)) <= {".hydra", "app.log", ".lock"}:
            return
        shutil.rmtree(folder)
        parent = os.path.dirname(os.path.abspath(folder))
        outputs = os.path.dirname(parent)
        if os.path.basename(outputs) == "outputs" and not os.listdir(parent):
            os.rmdir(parent)
            if not os.listdir(outputs):
                os.rmdir(outputs)
    except OSError:
        pass


def _main_of(cfg: DictConfig, run_dir: str) -> float:
    try:
        summary = run(cfg, run_dir, hydra.utils.get_original_cwd())
    except ValueError as err:  # a user error: one clear line, no traceback wall
        _say(f"nes_ensemble: error: {err}", logging.ERROR)
        sys.exit(2)
    except OSError as err:  # before the first evaluation: a run folder that is full, read-only or gone
        _say(f"nes_ensemble: error: {err.filename or run_dir}: {err.strerror or err}", logging.ERROR)
        sys.exit(4)
    except KeyboardInterrupt:  # Ctrl-C while starting or while closing (the loop handles its own)
        run_dir = os.path.abspath(cfg.resume) if cfg.resume else run_dir
        if os.path.exists(os.path.join(run_dir, JOURNAL)) or cfg.resume:
            _say(f"nes_ensemble: interrupted; every evaluation is saved in {run_dir}\n"
                 f"resume with: python -m nes_ensemble resume={run_dir}", logging.WARNING)
        else:
            _say("nes_ensemble: interrupted before the first evaluation", logging.WARNING)
        sys.exit(130)
    return float(summary.get("regret", -summary["best_y"]))


def main() -> None:
    """The app's entry (``cli.main`` answers ``--help`` and loads it)."""
    own_errors = "HYDRA_FULL_ERROR" not in os.environ
    if own_errors:  # Hydra then raises what it would print with a traceback, and we say it in one line
        os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
    except KeyboardInterrupt:  # before Hydra handed over the config
        print("nes_ensemble: interrupted before the run started", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        if not own_errors:
            raise
        line = _one_line(err)
        if line is None:
            raise
        print(f"nes_ensemble: error: {line}", file=sys.stderr)
        sys.exit(2)


def _one_line(err: BaseException) -> str | None:
    """What a start-up error of Hydra's (a misspelt key, a run folder it cannot create) says in one line, or None
    for an error that deserves its traceback."""
    from hydra.errors import CompactHydraException

    from ..config import did_you_mean

    if isinstance(err, OSError) and not isinstance(err, CompactHydraException):
        return f"{err.filename or 'the run folder'}: {err.strerror or err}"
    if not isinstance(err, CompactHydraException):
        return None
    text = str(err).split("Config search path")[0].strip()
    if "Could not find" in text:  # an unknown option of a group: Hydra's list of the options is the answer
        return text
    first = text.splitlines()[0] if text else type(err).__name__
    if "is not in struct" in text or "Could not override" in first:
        key = first.split("'")[1] if first.count("'") >= 2 else ""
        return f"unknown setting {key!r}{did_you_mean(key.split('=')[0])}" if key else first
    cause = err.__cause__
    return f"{first} {cause}".strip() if cause is not None and str(cause) not in text else first


if __name__ == "__main__":
    main()
