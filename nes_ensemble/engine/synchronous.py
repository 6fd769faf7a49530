"""``optimize``: the synchronous interface, where the library calls the objective ``budget`` times.

It builds an ``Optimizer``, evaluates given settings first (``initial``), drives the loop inline or
on workers, and returns a ``Result``. With a named space the objective gets one dict of native
values per call; if the run stops with an exception, the exception carries the ``Result`` so far.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from ..config import TrackingConfig, check_budget
from ..space import Space
from .loop import run, torch_threads
from .optimizer import Optimizer


@dataclass
class Result:
    """What ``optimize`` returns: the best point, every evaluation in order, and the lineage. With a named space
    ``best_params`` is the best setting (a dict) and ``params`` every setting evaluated; ``X`` then holds the
    points as the search encodes them."""

    best_x: np.ndarray
    best_y: float
    X: np.ndarray
    y: np.ndarray
    history: pd.DataFrame
    lineage: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    best_params: dict[str, Any] | None = None
    params: list[dict[str, Any]] | None = None
    mlflow_run: str | None = None  # the MLflow run's id, when ``optimize`` tracked the run
    direction: str = "maximize"  # as optimize was asked


class SettingFn:
    """The user's ``fn(params: dict) -> float`` as the loop calls it (one encoded x, or [m, dim] when batched)."""

    def __init__(self, fn: Callable, space: Space, batched: bool):
        self.fn, self.space, self.batched = fn, space, batched

    def __call__(self, x: np.ndarray) -> Any:
        if self.batched:
            return self.fn(self.space.present(x))
        return self.fn(self.space.present(x[None])[0])


def optimize(fn: Callable, bounds: Sequence[Sequence[float]] | Mapping[str, Any], budget: int = 300,
             seed: int | None = 0, strategy: str = "nes", *, batched: bool = False, direction: str = "maximize",
             callback: Callable[[Optimizer], None] | None = None, evaluator: str | Mapping[str, Any] | None = None,
             n_workers: int | None = None, threads: int | None = 1, initial: Sequence[Any] | None = None,
             progress: bool = False, tracking: bool | str | Mapping[str, Any] | None = None,
             **overrides: Any) -> Result:
    """Maximize (or minimize) ``fn`` over ``bounds`` with exactly ``budget`` evaluations.

    ``bounds`` is a sequence of (low, high) pairs, and ``fn`` maps one x [n] to a float (``batched=True``:
    [m, n] -> [m]); or a space, a dict of ``ne.Float`` / ``ne.Int`` / ``ne.Categorical``, and ``fn`` maps one
    setting (a dict) to a float (``batched``: a list of dicts to m floats). ``initial`` settings (points or
    dicts) are evaluated first. Keyword ``overrides`` set config keys: ``ensemble={"members": 20}``,
    ``search__mode="original"``. ``callback(opt)`` runs after every round of evaluations; it may call
    ``opt.stop()`` to end the run early, and ``optimize`` still returns the Result. ``progress=True`` shows a
    progress bar. ``evaluator="processes"`` or ``"ray"`` with ``n_workers=4`` evaluates that many points at
    once. torch uses ``threads`` CPU threads while it runs (None: torch's own setting), as on the command line.
    ``tracking=True`` records the run in MLflow as the command line does (the store ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlflow.db`` in the working folder; its id in ``Result.mlflow_run``); a string is the store's URI, a
    dict sets the keys of ``conf/tracking`` (``uri``, ``experiment``, ``run_name``, ``all_forks``). It is off by
    default: a library call writes no files and starts no process unless asked to.
    """
    if not callable(fn):
        raise TypeError(f"optimize: fn={fn!r} is not callable; pass the objective function first, then the bounds")
    budget = check_budget(budget)
    ev = dict(evaluator) if isinstance(evaluator, Mapping) else ({"name": evaluator} if evaluator else {})
    if n_workers is not None:
        ev["n_workers"] = n_workers
    if ev:
        overrides["evaluator"] = ev
    start = time.perf_counter()
    with torch_threads(threads):
        opt = Optimizer(bounds, seed=seed, direction=direction, strategy={"name": strategy}, budget=budget,
                        **overrides)
        for setting in initial or []:
            opt.enqueue(setting)
        objective = SettingFn(fn, opt.box, batched) if isinstance(opt.box, Space) else fn
        bar = _Progress(budget) if progress else None
        tracked = Tracked(tracking, opt, getattr(fn, "__name__", type(fn).__name__), strategy,
                          budget) if tracking not in (None, False) else None
        hooks = [h for h in (bar, tracked, callback) if h is not None]
        status = "FAILED"
        try:
            run(opt, objective, budget, (lambda o: [h(o) for h in hooks]) if hooks else None, batched)
            status = "FINISHED"
        except BaseException as err:  # the objective failing, a value that is no number, Ctrl-C: keep what was paid for
            status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
            try:
                err.result = result_of(opt, start)  # type: ignore[attr-defined]
            except Exception:  # never hide the error that stopped the run
                raise err from None
            err.add_note(f"nes_ensemble: the {opt.n_evaluations} evaluations made before this are in the "
                         "exception's .result (a Result, like optimize returns)")
            raise
        finally:
            if bar is not None:
                bar.close()
            mlflow_run = tracked.close(opt, status) if tracked is not None else None
    result = result_of(opt, start)
    result.mlflow_run = mlflow_run
    return result


class _Progress:
    """The run's progress (a bar in a terminal, else a line every tenth of the budget), moved after every round."""

    def __init__(self, budget: int):
        from ..app.progress import Progress

        self.bar = Progress(budget)

    def __call__(self, opt: Optimizer) -> None:
        i = opt.pool.best_index()
        self.bar.update(opt.n_evaluations, None if i is None else float(opt.sign * opt.pool.y[i]))

    def close(self) -> None:
        """Leave the bar as it ended."""
        self.bar.close()


def tracking_settings(spec: bool | str | Mapping[str, Any]) -> TrackingConfig:
    """``optimize``'s ``tracking`` argument as the command line's tracking settings; a misspelt key is refused."""
    if spec is True:
        return TrackingConfig()
    if isinstance(spec, str):
        return TrackingConfig(uri=spec)
    if isinstance(spec, Mapping):
        known = {f.name for f in fields(TrackingConfig)}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise ValueError(f"tracking={dict(spec)!r}: unknown key {unknown[0]!r}; the keys are "
                             f"{', '.join(sorted(known))}")
        return TrackingConfig(**spec)
    raise ValueError(f"tracking={spec!r}: give True, a tracking URI, or a dict of uri, experiment, run_name, all_forks")


class Tracked:
    """MLflow for a run driven from Python (``optimize``, the Hydra sweeper): the settings at the start, the numbers
    and the lineage after every round, the history and the lineage as artifacts at the end; written by the
    tracker's own process, as for the command line. With ``run_dir`` (a folder kept across restarts) a run that
    goes on continues its MLflow run; without, a temporary folder holds the tracker's record."""

    def __init__(self, spec: bool | str | Mapping[str, Any], opt: Optimizer, name: str, strategy: str,
                 budget: int, run_dir: str | None = None, source: str = "optimize",
                 results: str = "the run's results are in the Result optimize returns"):
        from omegaconf import OmegaConf

        from ..app.tracking import Tracker, default_uri

        settings = tracking_settings(spec)
        self.own = run_dir is None
        self.folder = tempfile.mkdtemp(prefix="nes_ensemble-") if self.own else run_dir
        self.start, self.tracker = time.perf_counter(), None
        if not settings.enabled:
            return
        params = {**OmegaConf.to_container(opt.cfg), "seed": opt.seed, "direction": opt.direction, "budget": budget}
        self.tracker = Tracker(default_uri(os.getcwd(), settings.uri), settings.experiment,
                               settings.run_name or f"{strategy}-{name}-s{opt.seed}", params,
                               {"strategy": strategy, "problem": name, "source": source}, run_dir=self.folder,
                               resume=not self.own, all_forks=settings.all_forks, results=results)

    def __call__(self, opt: Optimizer) -> None:
        if self.tracker is None:
            return
        self.tracker.log_events(opt.events)
        metrics = opt.metrics()
        metrics["elapsed_seconds"] = opt.seconds if not self.own else time.perf_counter() - self.start
        self.tracker.log_metrics(metrics, step=opt.n_evaluations)

    def close(self, opt: Optimizer, status: str, artifacts: Sequence[str] | None = None) -> str | None:
        """End the MLflow run with ``status``, attaching ``artifacts`` (default: the history and the lineage);
        returns its id."""
        from ..app.tracking import recorded_run

        try:
            if self.tracker is None:
                return None
            self(opt)
            if artifacts is None:
                opt.history().to_csv(os.path.join(self.folder, "history.csv"), index=False)
                with open(os.path.join(self.folder, "lineage.json"), "w") as f:
                    json.dump(opt.events, f, indent=1)
                artifacts = [os.path.join(self.folder, n) for n in ("history.csv", "lineage.json")]
            self.tracker.log_artifacts(list(artifacts))
            self.tracker.finish(status)
            return recorded_run(self.folder)
        finally:
            if self.own:
                shutil.rmtree(self.folder, ignore_errors=True)


def result_of(opt: Optimizer, start: float) -> Result:
    """The Result of the evaluations ``opt`` holds (a run that stopped early holds fewer than its budget)."""
    best, best_y = opt.best
    X = opt.box.to_native(opt.pool.x)
    if isinstance(opt.box, Space):
        best_x = None if best is None else opt.box.accept(best)[0]
        return Result(best_x, best_y, X, opt.sign * opt.pool.y, opt.history(), list(opt.events),
                      time.perf_counter() - start, best, opt.box.present(X) if len(X) else [],
                      direction=opt.direction)
    return Result(best, best_y, X, opt.sign * opt.pool.y, opt.history(), list(opt.events),
                  time.perf_counter() - start, direction=opt.direction)
