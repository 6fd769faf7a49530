"""MLflow tracking: the only module that imports mlflow.

The tracker is fed plain dicts (params, metrics with a step, events, file paths) by the app. It
never blocks the optimization: the calls run in a writer thread, in order, while the optimizer goes
on (``finish`` waits for them); if the store cannot be reached or errors, it says so once and goes
quiet, and the run directory still holds everything.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import sys
import threading
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
        self.members: dict[int, str] = {}  # member id -> its nested MLflow run (members alive now)
        self._queue: queue.Queue | None = None  # calls waiting for the writer thread
        self._writer: threading.Thread | None = None
        self.known: set[int] = set()  # every member id that has a run (a resumed run re-emits some events)
        self._failed = False
        self._guard(self._start, uri, experiment, run_name, params, dict(tags or {}), run_id)

    def _start(self, uri: str, experiment: str, run_name: str, params: Mapping[str, Any], tags: dict,
               run_id: str | None) -> None:
        # an unreachable server must not stall the run for minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient

        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        self.client = MlflowClient(tracking_uri=uri)
        if run_id:  # resuming: the interrupted run goes on, and so do its members' runs
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            self.experiment_id = self.client.get_run(run_id).info.experiment_id
            for run in self.client.search_runs([self.experiment_id], f"tags.optimization_run = '{run_id}'"):
                member = int(run.data.tags["member_id"])
                self.known.add(member)
                if run.info.status != "FINISHED":  # alive when the run stopped (not merged, not replaced)
                    self.members[member] = run.info.run_id
                    self.client.update_run(run.info.run_id, status="RUNNING")
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
            message = (f"MLflow tracking is off for the rest of this run ({type(err).__name__}: {str(err)[:300]}); "
                       "results stay in the run directory")
            log.warning(message)
            print(f"nes_ensemble: warning: {message}", file=sys.stderr)
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
            self._submit(do)

    def _submit(self, fn: Any, *args: Any) -> None:
        """Queue an MLflow call for the writer thread, so the optimization never waits on the store."""
        if self._queue is None:
            self._queue = queue.Queue()
            self._writer = threading.Thread(target=self._write, daemon=True, name="nes_ensemble-tracker")
            self._writer.start()
        self._queue.put((fn, args))

    def _write(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, args = item
            self._guard(fn, *args)

    def log_events(self, events: list[dict]) -> None:
        """Lineage into MLflow: a nested run per member (a fork's under its parent's), merges on the parent."""
        if self.active:
            for event in events:
                self._submit(self._event, event)

    def _member_run(self, event: dict, parent_run: str) -> None:
        if event["id"] in self.known:
            return
        self.known.add(event["id"])
        Param, RunTag = self._Param, self._RunTag
        tags = {"mlflow.parentRunId": parent_run, "optimization_run": self.run_id, "member_id": str(event["id"]),
                "parent_id": str(event.get("parent")), "generation": str(event["generation"]),
                "born_at_evaluation": str(event["evaluations"]), "kind": event["event"]}
        run = self.client.create_run(self.experiment_id, run_name=f"member-{event['id']}", tags=tags)
        keys = ("width", "depth", "lr", "weight_decay", "sparsity", "wider")
        self.client.log_batch(run.info.run_id, params=[Param(k, str(event[k])) for k in keys if k in event],
                              tags=[RunTag("replaced", str(event["replaced"]))] if "replaced" in event else [])
        self.members[event["id"]] = run.info.run_id

    def _event(self, event: dict) -> None:
        kind, step = event["event"], int(event.get("evaluations", 0))
        now = int(time.time() * 1000)
        if kind == "birth":
            self._member_run(event, self.run_id)
        elif kind in ("fork", "replace"):
            self._member_run(event, self.members.get(event["parent"], self.run_id))
            if kind == "replace" and event["replaced"] in self.members:
                self.client.set_terminated(self.members[event["replaced"]], "FINISHED")
        elif kind == "merge":
            parent = self.members.get(event["id"])
            if parent is None:
                return
            metrics = [self._Metric("fitness_before_merge", event["fitness_before"], now, step),
                       self._Metric("fitness_after_merge", event["fitness_after"], now, step),
                       self._Metric("lr", event["lr"], now, step), self._Metric("width", event["width"], now, step)]
            detail = {"forks": event["forks"], "weights": event["weights"], "fork_fitness": event["fork_fitness"],
                      "fitness_before": event["fitness_before"], "fitness_after": event["fitness_after"]}
            self.client.log_batch(parent, metrics=metrics,
                                  tags=[self._RunTag(f"merge.generation{event['generation']}", json.dumps(detail))])
            for fork, weight, fit in zip(event["forks"], event["weights"], event["fork_fitness"]):
                if fork in self.members:
                    run = self.members.pop(fork)
                    self.client.log_batch(run, metrics=[self._Metric("merge_weight", weight, now, step),
                                                        self._Metric("fitness", fit, now, step)],
                                          tags=[self._RunTag("merged_into", str(event["id"]))])
                    self.client.set_terminated(run, "FINISHED")
        else:  # restarts and other plain events: a tag on the optimization run
            self.client.set_tag(self.run_id, f"event.{kind}.{step}", json.dumps(event)[:5000])

    def log_artifacts(self, paths: list[str]) -> None:
        if self.active:
            for path in paths:
                if os.path.exists(path):
                    self._submit(self.client.log_artifact, self.run_id, path)

    def finish(self, status: str = "FINISHED") -> None:
        """End the optimization run and its members' runs with ``status`` (FINISHED, KILLED, FAILED)."""
        if self.active:
            def end() -> None:
                for run in self.members.values():
                    self.client.set_terminated(run, status)
                self.client.set_terminated(self.run_id, status)

            self._submit(end)
        if self._queue is not None:  # wait for every queued call
            self._queue.put(None)
            self._writer.join()
            self._queue = None
