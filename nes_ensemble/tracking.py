"""MLflow tracking: the only module that imports mlflow.

The tracker is fed plain dicts (params, metrics with a step, events, file paths) by the app. It
never blocks the optimization: every MLflow call runs in a separate writer process
(``python -m nes_ensemble.tracking``, fed JSON lines on its stdin), so importing mlflow and writing
to the store use another core, not the optimizer's time; ``finish`` waits for it. If the store cannot
be reached or errors, the writer says so once and goes quiet, and the run directory still holds
everything.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import queue
import select
import subprocess
import sys
import threading
import time
import warnings
from typing import Any, Iterator, Mapping

RUN_RECORD = "mlflow_run.json"  # in the run directory: which MLflow run a resumed run goes on with


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

    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(experiment)
        return exp.experiment_id if exp else client.create_experiment(experiment)


@contextlib.contextmanager
def store_lock(uri: str, patience: float = 120.0) -> Iterator[None]:
    """For a SQLite store: hold ``<database>.lock`` while the store is opened, so that runs started at the same
    moment in a fresh folder do not all create (and break) its schema; the first creates it, the others wait.
    Other stores need no lock. After ``patience`` seconds the caller goes on without it."""
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
    if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        yield
        return
    with _waiting_lock(path + ".lock", patience):
        yield


@contextlib.contextmanager
def _waiting_lock(path: str, patience: float) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path``, waiting for it at most ``patience`` seconds; without
    advisory locks, or where the file cannot be opened (a read-only folder), go on without one."""
    try:
        import fcntl
    except ImportError:  # no advisory locks on this platform
        fcntl = None
    try:
        lock = open(path, "a") if fcntl is not None else None
    except OSError:
        lock = None
    if lock is None:
        yield
        return
    with lock:
        deadline = time.monotonic() + patience
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.1)
        yield


def member_run_name(event: Mapping[str, Any]) -> str:
    """A member run's name, unique in its optimization and short enough for the UI's column: the member, its
    generation and how it came to be, e.g. ``m12 g2 fork of m7`` (a merge appends ``-> m7 w 0.41``)."""
    head = f"m{event['id']} g{event['generation']}"
    if event["event"] == "fork":
        return f"{head} fork of m{event['parent']}"
    if event["event"] == "replace":
        return f"{head} replaces m{event['replaced']}"
    return f"{head} born"


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
    """One MLflow run per optimization, written by a writer process; the optimizer only queues JSON lines.

    ``run_dir`` receives ``mlflow_run.json`` (the run's id) once the run exists; with ``resume`` the
    writer goes on with the run that file names. The writer runs in its own session, so a Ctrl-C meant
    for the optimization does not cut the tracking short: the app's ``finish("KILLED")`` still lands.
    """

    def __init__(self, uri: str, experiment: str, run_name: str, params: Mapping[str, Any],
                 tags: Mapping[str, str] | None = None, run_dir: str = "", resume: bool = False):
        self.uri = uri
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root,
                                                                          os.environ.get("PYTHONPATH")])))
        self._queue: queue.Queue = queue.Queue()
        try:
            self._proc = subprocess.Popen([sys.executable, "-m", "nes_ensemble.tracking"], stdin=subprocess.PIPE,
                                          env=env, start_new_session=True)
        except OSError as err:
            print(f"nes_ensemble: warning: MLflow tracking is off for this run (cannot start its writer: {err}); "
                  "results stay in the run directory", file=sys.stderr)
            self._proc = None
        self._feeder = threading.Thread(target=self._feed, daemon=True, name="nes_ensemble-tracker")
        self._feeder.start()
        self._send("start", uri=uri, experiment=experiment, run_name=run_name, params=flatten(params),
                   tags=dict(tags or {}), run_dir=run_dir, resume=resume)

    def _send(self, op: str, **payload: Any) -> None:
        self._queue.put(json.dumps({"op": op, **payload}, default=float) + "\n")

    def _feed(self) -> None:
        """Write queued lines to the writer; a writer that died takes no more (it reported why itself)."""
        while (line := self._queue.get()) is not None:
            if self._proc is None:
                continue
            try:
                self._proc.stdin.write(line.encode())
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """All metrics of a round, one log_batch call in the writer."""
        clean = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
        self._send("metrics", metrics=clean, step=int(step))

    def log_events(self, events: list[dict]) -> None:
        """Lineage into MLflow: a nested run per member (a fork's under its parent's), merges on the parent."""
        if events:
            self._send("events", events=events)

    def log_artifacts(self, paths: list[str]) -> None:
        """Files to attach to the optimization run (missing ones are skipped)."""
        self._send("artifacts", paths=[os.path.abspath(p) for p in paths if os.path.exists(p)])

    def finish(self, status: str = "FINISHED") -> None:
        """End the optimization run and its members' runs with ``status`` (FINISHED, KILLED, FAILED) and wait
        until everything queued is written."""
        self._send("finish", status=status)
        self._queue.put(None)
        self._feeder.join()
        if self._proc is not None:
            with contextlib.suppress(OSError, ValueError):
                self._proc.stdin.close()
            self._proc.wait()


class _Writer:
    """The writer process's side: the MLflow calls, each guarded so that a broken store never stops a run."""

    def __init__(self) -> None:
        self.client = None
        self.run_id: str | None = None
        self.members: dict[int, str] = {}  # member id -> its nested MLflow run (members alive now)
        self.known: set[int] = set()  # every member id that has a run (a resumed run re-emits some events)
        self.names: dict[int, str] = {}  # member id -> its run's name (a merge renames a fork's run)
        self._failed = False

    def start(self, uri: str, experiment: str, run_name: str, params: Mapping[str, Any], tags: dict,
              run_dir: str, resume: bool) -> None:
        # an unreachable server must not stall the run for minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic", "sqlalchemy"):  # (set after mlflow's import, which sets its own level)
            logging.getLogger(name).setLevel(logging.CRITICAL)  # a store error is reported once, by handle
        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        with store_lock(uri):
            self.client = MlflowClient(tracking_uri=uri)
            self.client.search_experiments(max_results=1)  # opens (and, the first time, creates) the store
        record = os.path.join(run_dir, RUN_RECORD) if run_dir else ""
        run_id = None
        if resume and record and os.path.exists(record):
            with open(record) as f:
                run_id = json.load(f).get("run_id")
        if run_id:  # resuming: the interrupted run goes on, and so do its members' runs
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
            self.experiment_id = self.client.get_run(run_id).info.experiment_id
            for run in self.client.search_runs([self.experiment_id], f"tags.optimization_run = '{run_id}'"):
                member = int(run.data.tags["member_id"])
                self.known.add(member)
                self.names[member] = run.info.run_name
                if run.info.status != "FINISHED":  # alive when the run stopped (not merged, not replaced)
                    self.members[member] = run.info.run_id
                    self.client.update_run(run.info.run_id, status="RUNNING")
            return
        with store_lock(uri):  # two runs must not both create the experiment
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        run = self.client.create_run(exp_id, run_name=run_name, tags=tags)
        self.run_id, self.experiment_id = run.info.run_id, exp_id
        if record:
            with open(record, "w") as f:
                json.dump({"run_id": self.run_id, "uri": uri}, f)
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def handle(self, message: dict) -> None:
        """Carry out one message of the optimization process, unless the store has failed before."""
        if self._failed or (self.run_id is None and message["op"] != "start"):
            return
        op = message.pop("op")
        handler = {"start": self.start, "metrics": self.log_metrics, "events": self.log_events,
                   "artifacts": self.log_artifacts, "finish": self.finish}[op]
        try:
            handler(**message)
        except Exception as err:  # any store error: report once, keep quiet after
            self._failed = True
            detail = " ".join(str(err).split("[SQL:")[0].split())  # one line, without the statement
            text = (f"MLflow tracking is off for the rest of this run ({type(err).__name__}: {detail[:300]}); "
                    "results stay in the run directory")
            print(f"nes_ensemble: warning: {text}", file=sys.stderr, flush=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self._Metric(k, v, now, step) for k, v in metrics.items()])

    def log_events(self, events: list[dict]) -> None:
        for event in events:
            self._event(event)

    def log_artifacts(self, paths: list[str]) -> None:
        """Attach the files to the run."""
        for path in paths:
            self.client.log_artifact(self.run_id, path)

    def finish(self, status: str) -> None:
        for run in self.members.values():
            self.client.set_terminated(run, status)
        self.client.set_terminated(self.run_id, status)
        self.members.clear()

    def _member_run(self, event: dict, parent_run: str) -> None:
        if event["id"] in self.known:
            return
        self.known.add(event["id"])
        Param, RunTag = self._Param, self._RunTag
        tags = {"mlflow.parentRunId": parent_run, "optimization_run": self.run_id, "member_id": str(event["id"]),
                "parent_id": str(event.get("parent")), "generation": str(event["generation"]),
                "born_at_evaluation": str(event["evaluations"]), "kind": event["event"]}
        self.names[event["id"]] = member_run_name(event)
        run = self.client.create_run(self.experiment_id, run_name=self.names[event["id"]], tags=tags)
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
                    self.client.update_run(run, name=f"{self.names.get(fork, f'm{fork}')} -> m{event['id']} "
                                                    f"w {weight:.2f}")
                    self.client.set_terminated(run, "FINISHED")
        else:  # restarts and other plain events: a tag on the optimization run
            self.client.set_tag(self.run_id, f"event.{kind}.{step}", json.dumps(event)[:5000])


@contextlib.contextmanager
def _exclusive(run_dir: str, patience: float = 60.0) -> Iterator[None]:
    """Hold the run directory's tracking lock, so that the writer of a killed run finishes its queue
    before the writer of the resumed run reads the run record (for at most ``patience`` seconds)."""
    if not run_dir:
        yield
        return
    with _waiting_lock(os.path.join(run_dir, ".mlflow_writer.lock"), patience):
        yield


def _messages(fd: int) -> Iterator[dict]:
    """JSON messages from the optimization process, one per line, until it closes the pipe or dies."""
    parent = os.getppid()
    buffer = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            if os.getppid() != parent:  # orphaned: a process forked from the parent may hold the pipe open
                return
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        *lines, buffer = (buffer + chunk).split(b"\n")
        for line in lines:
            yield json.loads(line)


def serve(fd: int = 0) -> None:
    """The writer process. The end of the stream without ``finish`` means that the optimization process
    died: its runs are marked KILLED (a resume sets them running again)."""
    messages = _messages(fd)
    start = next(messages, None)
    if start is None:
        return
    writer = _Writer()
    with _exclusive(start.get("run_dir", "")):
        writer.handle(start)
        for message in messages:
            finished = message["op"] == "finish"
            writer.handle(message)
            if finished:  # done, even if a process forked from the run still holds the pipe open
                return
        writer.handle({"op": "finish", "status": "KILLED"})


if __name__ == "__main__":
    serve()
