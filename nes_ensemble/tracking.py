"""MLflow tracking: the only module that imports mlflow.

The tracker is fed plain dicts (params, metrics with a step, file paths) by the app. It never
blocks the optimization: if the store cannot be reached or errors, it says so once and goes quiet,
and the run directory still holds everything.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from typing import Any, Mapping

log = logging.getLogger(__name__)


def default_uri(project_root: str, uri: str = "") -> str:
    """The tracking URI: the configured one, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the project root."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return "sqlite:///" + os.path.join(project_root, "mlflow.db")


def prepare_store(uri: str, experiment: str) -> str:
    """Create the store (its database schema, for SQLite) and the experiment once, before parallel jobs
    start: several processes creating a fresh SQLite store at the same moment break it. Returns the
    experiment id."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    return exp.experiment_id if exp else client.create_experiment(experiment)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}, lists kept as their string form."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


class Tracker:
    """One MLflow run per optimization; every call is guarded so a broken store never stops a run."""

    def __init__(self, uri: str, experiment: str, run_name: str, params: Mapping[str, Any],
                 tags: Mapping[str, str] | None = None, run_id: str | None = None):
        self.client = None
        self.run_id: str | None = None
        self.uri = uri
        self._failed = False
        self._guard(self._start, uri, experiment, run_name, params, dict(tags or {}), run_id)

    def _start(self, uri: str, experiment: str, run_name: str, params: Mapping[str, Any], tags: dict,
               run_id: str | None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient

        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        self.client = MlflowClient(tracking_uri=uri)
        if run_id:  # resuming: the interrupted run goes on
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            return
        exp = self.client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        run = self.client.create_run(exp_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])
        self.uri, self.experiment_id = uri, exp_id

    def _guard(self, fn, *args: Any) -> Any:
        if self._failed:
            return None
        try:
            return fn(*args)
        except Exception as err:  # any store error: report once, keep optimizing
            self._failed = True
            log.warning("MLflow tracking is off for the rest of this run (%s: %s); results stay in the run "
                        "directory", type(err).__name__, err)
            return None

    @property
    def active(self) -> bool:
        return self.run_id is not None and not self._failed

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """One log_batch call for all metrics of a round."""
        def do() -> None:
            now = int(time.time() * 1000)
            batch = [self._Metric(k, float(v), now, step) for k, v in metrics.items()
                     if v is not None and math.isfinite(float(v))]
            self.client.log_batch(self.run_id, metrics=batch)

        if self.active:
            self._guard(do)

    def log_artifacts(self, paths: list[str]) -> None:
        if self.active:
            for path in paths:
                if os.path.exists(path):
                    self._guard(self.client.log_artifact, self.run_id, path)

    def finish(self, status: str = "FINISHED") -> None:
        if self.active:
            self._guard(self.client.set_terminated, self.run_id, status)
