"""The Hydra sweeper's work (the plugin class itself, in ``hydra_plugins.nes_ensemble_sweeper``, stays light
because Hydra imports every plugin at every app's start).

A sweep turns the sweep overrides (``lr=tag(log,interval(1e-4,1e-1))``, ``layers=range(1,8)``,
``opt=choice(adam,sgd)``, and the same in ``hydra.sweeper.params``) into a named space, asks an
``Optimizer`` for ``n_jobs`` settings at a time, launches them as Hydra jobs with the configured
launcher, and tells it each job's return value. Everything it needs to go on lives in the sweep
folder's ``nes_ensemble/``: the settings (``sweep.json``), the optimizer's journal and checkpoint,
and one record per finished job (``jobs/N.json``, written by the job itself as it ends), so a sweep
stopped mid-way and started again with the same ``hydra.sweep.dir`` runs no finished job twice.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, RangeSweep, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.errors import CompactHydraException
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

STATE = "nes_ensemble"  # the sweeper's folder inside the sweep folder
OUR_GROUPS = ("ensemble", "search", "evolution")  # the optimizer's config groups a sweep may set


class SweepError(CompactHydraException):
    """A sweep that cannot start (or go on), said in one line naming the parameter or setting."""


@dataclass
class Param:
    """One searched parameter: the override key (``+db`` adds the key), the space's parameter, and the values a
    grid index stands for (a ``range``)."""

    key: str
    param: Any
    grid: list | None = None

    def value(self, v: Any) -> Any:
        """The job's value of the optimizer's value ``v``."""
        return self.grid[int(v)] if self.grid is not None else v


def parse_arguments(arguments: Sequence[str]) -> tuple[dict[str, Param], list[str]]:
    """The searched parameters (name -> Param) and the fixed overrides every job gets, from override strings;
    a SweepError naming the parameter for anything this sweeper cannot search."""
    from ..space import Categorical, Float, Int

    parser = OverridesParser.create()
    params: dict[str, Param] = {}
    fixed: list[str] = []
    for text in arguments:
        try:
            override = parser.parse_override(text)
        except Exception as err:  # the grammar's own message, on one line
            raise SweepError(f"nes_ensemble sweeper: {text!r}: {' '.join(str(err).split())}") from None
        if not override.is_sweep_override():
            fixed.append(text)
            continue
        name, value = override.key_or_group, override.value()
        try:
            if isinstance(value, Glob):
                raise ValueError("glob() selects config groups to run all of; search them with choice(...)")
            if isinstance(value, IntervalSweep):
                unknown = sorted(set(value.tags) - {"log"})
                if unknown:
                    raise ValueError(f"unknown tag {unknown[0]!r} (this sweeper reads the tag log)")
                p = Param(override.get_key_element(), Float(float(value.start), float(value.end),
                                                            log="log" in value.tags))
            elif isinstance(value, RangeSweep):
                values = sorted(override.sweep_iterator(transformer=Transformer.encode))
                if len(values) < 2:
                    raise ValueError(f"the range holds {len(values)} value(s); give start < stop")
                whole = all(isinstance(v, int) for v in values)
                if whole and values == list(range(values[0], values[-1] + 1)):
                    p = Param(override.get_key_element(), Int(values[0], values[-1], log="log" in value.tags))
                else:  # a grid of steps: searched as the index of its point
                    p = Param(override.get_key_element(), Int(0, len(values) - 1), values)
            elif isinstance(value, ChoiceSweep):
                choices = list(override.sweep_iterator(transformer=Transformer.encode))
                p = Param(override.get_key_element(), Categorical(choices))
            else:
                raise ValueError(f"{type(value).__name__} is not a sweep this sweeper searches")
            p.param.check(name)
        except ValueError as err:
            message = str(err)
            raise SweepError(f"nes_ensemble sweeper: {name}: {message.removeprefix(f'{name}: ')} (in {text!r}); the "
                             "sweeps it searches are interval(low,high), tag(log,interval(low,high)), "
                             "range(start,stop[,step]) and choice(a,b,...)") from None
        if name in params:
            raise SweepError(f"nes_ensemble sweeper: {name}: searched twice ({text!r}); give it once")
        params[name] = p
    if not params:
        raise SweepError("nes_ensemble sweeper: nothing to search: give a sweep such as "
                         "'lr=tag(log,interval(1e-4,1e-1))', 'layers=range(1,8)' or 'opt=choice(adam,sgd)'")
    return params, fixed


def override_text(key: str, value: Any) -> str:
    """``key=value`` as Hydra's override grammar reads the value back."""
    if value is None:
        return f"{key}=null"
    if isinstance(value, bool):
        return f"{key}={str(value).lower()}"
    if isinstance(value, float):
        return f"{key}={value!r}"
    return f"{key}={value}"


class RecordedTask:
    """The app's task function as the launcher runs it: it also writes what the job returned (or how it failed) to
    ``jobs/N.json`` in the sweeper's folder as the job ends, so a restarted sweep finds the jobs that finished."""

    def __init__(self, task: Callable[[DictConfig], Any], folder: str):
        self.task, self.folder = task, folder
        self.__name__ = getattr(task, "__name__", "task")  # Hydra names the job's log file after it

    def __call__(self, cfg: DictConfig) -> Any:
        from hydra.core.hydra_config import HydraConfig

        job = HydraConfig.get().job
        record = {"job": int(job.num), "overrides": list(HydraConfig.get().overrides.task)}
        try:
            value = self.task(cfg)
        except BaseException as err:
            _write_job(self.folder, {**record, "status": "failed", "error": one_line(err)})
            raise
        number, problem = job_value(value)
        _write_job(self.folder, {**record, "status": "done" if problem == "" else "failed", "value": number,
                                 "error": problem})
        return value


def one_line(err: BaseException) -> str:
    """An exception as one short line."""
    return f"{type(err).__name__}: {' '.join(str(err).split())}"[:500]


def job_value(value: Any) -> tuple[float, str]:
    """A job's return value as a number, and what is wrong with it ("" when it is a finite number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan, f"the job returned {value!r:.200}, not a number"
    if not math.isfinite(number):
        return math.nan, f"the job returned {number}"
    return number, ""


def _write_job(folder: str, record: dict) -> None:
    jobs = os.path.join(folder, "jobs")
    os.makedirs(jobs, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=jobs, prefix=".job-")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(jobs, f"{record['job']}.json"))


def read_job(folder: str, number: int) -> dict | None:
    """The record job ``number`` left (None if it left none, or one that is not a record of it)."""
    try:
        with open(os.path.join(folder, "jobs", f"{number}.json")) as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    ok = (isinstance(record, dict) and record.get("job") == number and record.get("status") in ("done", "failed")
          and isinstance(record.get("overrides"), list) and all(isinstance(o, str) for o in record["overrides"]))
    return record if ok else None


class SweeperImpl:
    """The nes_ensemble sweeper (see the module's docstring); ``NESSweeper`` hands everything to it."""

    def __init__(self, budget: int, n_jobs: int, direction: str, seed: int, strategy: str,
                 params: DictConfig | dict | None, max_failures: int, tracking: DictConfig | dict,
                 optimizer: DictConfig | dict | None):
        # checked in setup: an error raised here would reach the user wrapped in Hydra's instantiation message
        self.budget, self.n_jobs, self.direction, self.seed = budget, n_jobs, direction, seed
        self.strategy, self.max_failures = str(strategy), max_failures
        self.params = _plain(params) or {}
        self.tracking = _plain(tracking) or {}
        self.optimizer = {k: _plain(v) for k, v in (_plain(optimizer) or {}).items() if k in OUR_GROUPS and v}

    def _check_settings(self) -> None:
        from ..config import check_budget, check_seed

        self.budget = _checked("budget", self.budget, check_budget)
        if isinstance(self.n_jobs, bool) or not isinstance(self.n_jobs, int) or self.n_jobs < 1:
            raise SweepError(f"nes_ensemble sweeper: n_jobs={self.n_jobs!r}: give a whole number >= 1 (jobs launched "
                             "at a time)")
        if self.direction not in ("minimize", "maximize"):
            raise SweepError(f"nes_ensemble sweeper: direction={self.direction!r}: choose minimize or maximize")
        self.seed = _checked("seed", self.seed, check_seed)
        if isinstance(self.max_failures, bool) or not isinstance(self.max_failures, int) or self.max_failures < 0:
            raise SweepError(f"nes_ensemble sweeper: max_failures={self.max_failures!r}: give a whole number >= 0 "
                             "(0: never stop for failed jobs)")

    def setup(self, *, hydra_context: Any, task_function: Callable, config: DictConfig) -> None:
        """Check the settings, keep the app's config and make the launcher, whose jobs record what they return."""
        self._check_settings()
        self.config, self.hydra_context = config, hydra_context
        self.folder = os.path.abspath(os.path.join(str(config.hydra.sweep.dir), STATE))
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=RecordedTask(task_function, self.folder))

    # ------------------------------------------------------------------ the sweep
    def sweep(self, arguments: list[str]) -> None:
        """Run jobs to the budget (or on from where an earlier run of this sweep folder stopped)."""
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        params, fixed = parse_arguments(given)
        self._check_composes(params, fixed)
        opt = self._optimizer(params, fixed)
        tracked = self._tracker(opt)
        status, failures_in_a_row = "FAILED", 0
        started = time.perf_counter()
        try:
            if opt.n_evaluations:
                log.info(f"nes_ensemble sweeper: going on from {opt.n_evaluations} finished jobs in {self.folder}")
            while opt.n_evaluations < self.budget:
                settings = opt.ask(min(self.n_jobs, self.budget - opt.n_evaluations))
                values, reasons = self._run(params, fixed, settings, opt.n_evaluations)
                opt.tell(settings, values, reasons=reasons)
                opt.seconds = opt.seconds + (time.perf_counter() - started)
                started = time.perf_counter()
                opt.save(os.path.join(self.folder, "checkpoint.pt"))
                if tracked is not None:
                    tracked(opt)
                self._progress(opt)
                failures_in_a_row = 0 if any(not r for r in reasons) else failures_in_a_row + len(reasons)
                if self.max_failures and failures_in_a_row >= self.max_failures:
                    raise SweepError(f"nes_ensemble sweeper: the last {failures_in_a_row} jobs failed (the last: "
                                     f"{reasons[-1]}); the sweep stops (max_failures={self.max_failures}); mend the "
                                     f"app and run the same command with hydra.sweep.dir={self.config.hydra.sweep.dir} "
                                     "to go on")
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self._finish(opt, params, tracked, status)

    def _run(self, params: dict[str, Param], fixed: list[str], settings: list[dict], first: int
             ) -> tuple[list[float], list[str]]:
        """Values and failure reasons of jobs ``first``, ``first + 1``, ... running ``settings``: a job that already
        finished (the sweep was stopped before its value was told) is read back, the others launched."""
        overrides = [self._overrides(params, fixed, s) for s in settings]
        values, reasons = [math.nan] * len(settings), [""] * len(settings)
        launch = []
        for i, job in enumerate(overrides):
            record = read_job(self.folder, first + i)
            if record is not None and record["overrides"] == list(job):
                values[i], reasons[i] = job_value(record.get("value")) if record["status"] == "done" else (
                    math.nan, str(record.get("error") or "the job failed"))
                log.info(f"nes_ensemble sweeper: job {first + i} finished before the sweep stopped; its result is "
                         "read back, not run again")
            else:
                launch.append(i)
        runs: list[list[int]] = []  # stretches of consecutive job numbers, as the launcher numbers its jobs
        for i in launch:
            if runs and i == runs[-1][-1] + 1:
                runs[-1].append(i)
            else:
                runs.append([i])
        for run in runs:
            returns = self.launcher.launch([overrides[i] for i in run], initial_job_idx=first + run[0])
            for i, ret in zip(run, returns):
                values[i], reasons[i] = self._value_of(ret)
        return values, reasons

    @staticmethod
    def _value_of(ret: Any) -> tuple[float, str]:
        if ret.status == JobStatus.COMPLETED:
            return job_value(ret._return_value)
        err = ret._return_value
        return math.nan, one_line(err) if isinstance(err, BaseException) else "the job failed"

    @staticmethod
    def _overrides(params: dict[str, Param], fixed: list[str], setting: dict) -> tuple[str, ...]:
        return tuple(override_text(p.key, p.value(setting[name])) for name, p in params.items()) + tuple(fixed)

    # ------------------------------------------------------------------ before any job
    def _check_composes(self, params: dict[str, Param], fixed: list[str]) -> None:
        """Compose the app's config with each parameter set to a value of its range, as a job will: a parameter
        the config lacks (or whose type refuses the values) stops the sweep here, naming it."""
        from ..space import Categorical

        loader = self.hydra_context.config_loader
        for name, p in params.items():
            probe = p.param.choices[0] if isinstance(p.param, Categorical) else p.param.low
            text = override_text(p.key, p.value(probe))
            try:
                loader.load_sweep_config(self.config, [text, *fixed])
            except Exception as err:
                detail = " ".join(str(err).split())
                if "To append to your config use +" in detail or "not in struct" in detail:
                    detail = (f"{name} is not in the app's config (add it there, or write +{name}=... to add it "
                              f"for the sweep)")
                raise SweepError(f"nes_ensemble sweeper: {name}: the app's config does not take {text!r}: "
                                 f"{detail}") from None

    def _settings(self, params: dict[str, Param], fixed: list[str]) -> dict:
        from ..space import Space

        space = Space({name: p.param for name, p in params.items()})
        return {"space": space.to_dict(), "keys": {n: p.key for n, p in params.items()},
                "grids": {n: p.grid for n, p in params.items() if p.grid is not None}, "fixed": fixed,
                "budget": self.budget, "seed": self.seed, "strategy": self.strategy, "direction": self.direction,
                "optimizer": self.optimizer}

    def _optimizer(self, params: dict[str, Param], fixed: list[str]) -> Any:
        """The optimizer of this sweep: new, or the one this sweep folder holds (same settings, or a SweepError
        saying which differs)."""
        from ..engine.optimizer import Optimizer

        settings = self._settings(params, fixed)
        path = os.path.join(self.folder, "sweep.json")
        journal, saved_at = os.path.join(self.folder, "journal.jsonl"), os.path.join(self.folder, "checkpoint.pt")
        earlier = None
        if os.path.exists(path):
            try:
                with open(path) as f:
                    earlier = json.load(f)
            except (OSError, ValueError) as err:
                raise SweepError(f"nes_ensemble sweeper: {path}: unreadable ({one_line(err)}); give a new "
                                 "hydra.sweep.dir") from None
            differ = [k for k in settings if not isinstance(earlier, dict) or earlier.get(k) != settings[k]]
            if differ:
                key = differ[0]
                raise SweepError(f"nes_ensemble sweeper: {self.config.hydra.sweep.dir} holds a sweep of other "
                                 f"settings ({key}: {_short(earlier, key)} there, {_short(settings, key)} now); run "
                                 "it with its own settings to go on, or give a new hydra.sweep.dir")
        space = {name: p.param for name, p in params.items()}
        kwargs = dict(seed=self.seed, direction=self.direction)
        config = {"strategy": {"name": self.strategy}, "budget": self.budget, **self.optimizer}
        from ..engine.checkpoint import UnsafeCheckpointError

        try:
            opt = None
            if earlier is not None and os.path.exists(saved_at):
                try:
                    opt = Optimizer.load(saved_at, journal=journal)
                except UnsafeCheckpointError as err:  # not rebuilt over: whoever made the folder should know first
                    raise SweepError(f"nes_ensemble sweeper: {' '.join(str(err).split())}; if the sweep is yours, "
                                     f"delete {saved_at} and run it again to rebuild it from its journal") from None
                except ValueError as err:  # damaged: the journal holds every evaluation
                    log.warning(f"nes_ensemble sweeper: {' '.join(str(err).split())}; rebuilding from {journal}")
            if opt is None and earlier is not None and os.path.exists(journal):
                opt = Optimizer.rebuild(space, journal, config=config, **kwargs)
            elif opt is None:
                opt = Optimizer(space, config=config, journal=journal, **kwargs)
        except SweepError:
            raise
        except ValueError as err:  # a misspelt optimizer key: one line
            raise SweepError(f"nes_ensemble sweeper: {' '.join(str(err).split())}") from None
        if earlier is None:
            os.makedirs(self.folder, exist_ok=True)
            with open(path, "w") as f:
                json.dump(settings, f, indent=1)
        return opt

    # ------------------------------------------------------------------ what a user sees
    def _progress(self, opt: Any) -> None:
        i = opt.pool.best_index()
        best = "none yet" if i is None else f"{opt.sign * opt.pool.y[i]:.6g}"
        failed = int(len(opt.pool) - opt.pool.ok.sum())
        log.info(f"nes_ensemble sweeper: {opt.n_evaluations}/{self.budget} jobs, best {best}"
                 + (f", {failed} failed" if failed else ""))

    def _tracker(self, opt: Any) -> Any:
        if not self.tracking.get("enabled", True):
            return None
        from ..engine.synchronous import Tracked

        spec = {k: v for k, v in self.tracking.items() if k != "enabled"}
        app = str(self.config.hydra.job.name)
        return Tracked(spec or True, opt, app, self.strategy, self.budget, run_dir=self.folder,
                       source="hydra sweeper", results=f"the sweep's results are in {self.folder}")

    def _finish(self, opt: Any, params: dict[str, Param], tracked: Any, status: str) -> None:
        """Write optimization_results.yaml, the history and the lineage; close the MLflow run; say how it ended."""
        from ..app.main import proposed_by

        sweep_dir = str(self.config.hydra.sweep.dir)
        best, best_value = opt.best
        if best is not None:
            best_params = {p.key.lstrip("+~"): p.value(best[name]) for name, p in params.items()}
            OmegaConf.save(OmegaConf.create({"name": "nes_ensemble", "best_params": best_params,
                                             "best_value": best_value}),
                           os.path.join(sweep_dir, "optimization_results.yaml"))
        history = opt.history()
        for name, p in params.items():
            if p.grid is not None and name in history:
                history[name] = [p.value(v) for v in history[name]]
        history.to_csv(os.path.join(self.folder, "history.csv"), index=False)
        with open(os.path.join(self.folder, "lineage.json"), "w") as f:
            json.dump(opt.events, f, indent=1)
        self._summary(history, params, sweep_dir)
        mlflow_run = tracked.close(opt, status, [os.path.join(self.folder, n) for n in ("history.csv", "lineage.json")]
                                   ) if tracked is not None else None
        failed = int(len(opt.pool) - opt.pool.ok.sum())
        kinds = ", ".join(f"{k} {n}" for k, n in proposed_by(opt).items() if n)
        line = (f"nes_ensemble sweeper: {opt.n_evaluations} of {self.budget} jobs" + (f" ({failed} failed)" if failed
                else "") + (f", proposed by {kinds}" if kinds else "") + (
                f"; best {best_value:.6g} at {best_params}" if best is not None else "; no job succeeded")
                + f"; {os.path.join(sweep_dir, 'optimization_results.yaml') if best is not None else self.folder}"
                + (f"; MLflow run {mlflow_run}" if mlflow_run else ""))
        log.info(line)


    def _summary(self, history: Any, params: dict[str, Param], sweep_dir: str, top: int = 5) -> None:
        """The best jobs as a table: printed, and saved as summary.md in the sweep folder."""
        done = history[history["status"] == "ok"]
        if done.empty:
            return
        best = done.sort_values("y", ascending=self.direction == "minimize").head(top)
        table = best[["evaluation", *params, "y"]].rename(columns={"evaluation": "job", "y": "value"})
        failed = int((history["status"] != "ok").sum())
        text = (f"## nes_ensemble sweep: the best {len(table)} of {len(history)} jobs ({self.direction}"
                + (f"; {failed} failed" if failed else "") + ")\n\n" + table.to_markdown(index=False) + "\n")
        with open(os.path.join(sweep_dir, "summary.md"), "w") as f:
            f.write(text)
        log.info("\n" + text)


def _checked(name: str, value: Any, check: Callable[[Any], Any]) -> Any:
    try:
        return check(value)
    except ValueError as err:
        raise SweepError(f"nes_ensemble sweeper: {name}: {' '.join(str(err).split())}") from None


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def _short(settings: Any, key: str) -> str:
    value = settings.get(key) if isinstance(settings, dict) else None
    return f"{json.dumps(value)[:120]}"
