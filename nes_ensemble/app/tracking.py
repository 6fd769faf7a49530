"""MLflow tracking: the only module that imports mlflow.

The tracker is fed plain dicts (params, metrics with a step, events, file paths) by the app. It
never blocks the optimization: every MLflow call runs in a separate writer process
(``python -m nes_ensemble.app.tracking``, fed JSON lines on its stdin), so importing mlflow and writing
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

    _quiet_mlflow()
    with store_lock(uri):
        client = MlflowClient(tracking_uri=uri)
        return _experiment_id(client, experiment)


def store_problem(uri: str) -> str:
    """Why a SQLite store cannot be written (a read-only folder, a file that is no database), or "" when it can
    or is no SQLite file: checked before MLflow tries, which retries for minutes."""
    if not uri.startswith("sqlite:///") or "?" in uri or uri.startswith("sqlite:///file:"):
        return ""  # not a plain SQLite file (a server; a URI filename with its own options): MLflow's to open
    path = uri[len("sqlite:///"):]
    try:
        existed = os.path.exists(path)
        with open(path, "ab"):
            pass
        if existed:
            import sqlite3

            with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
                db.execute("PRAGMA schema_version").fetchone()
    except OSError as err:
        return f"cannot write the store {uri}: {err.strerror or err}"
    except Exception as err:  # sqlite3.DatabaseError: not a database
        return f"cannot open the store {uri}: {err}"
    return ""


def _experiment_id(client: Any, name: str) -> str:
    """The id of the experiment ``name``, created with a description if it does not exist (call it holding
    ``store_lock``)."""
    exp = client.get_experiment_by_name(name)
    if exp:
        return exp.experiment_id
    lineage = name.endswith("-lineage")
    text = (f"The family trees of the optimization runs of experiment {name.removesuffix('-lineage')}: under each "
            "optimization's run, its members (m0, m1, ...; 'copy of' a strong member that replaced a weak one), and "
            "under each member the forks merged back into it, named by generation, NES weight, fitness and id. "
            "Click + beside a run to open its tree." if lineage else
            "Optimizations by nes_ensemble: one run per optimization (a sweep gives one per job, tagged sweep_id, "
            "and a summary run with the same tag). Metrics are logged with step = evaluations so far: best_y, "
            "regret and log10_regret where the optimum is known (chart log10_regret to tell strategies apart), "
            f"surrogate_error, generation, ... The family trees are in experiment {lineage_experiment(name)}.")
    return client.create_experiment(name, tags={"mlflow.note.content": text})


def _quiet_mlflow() -> None:
    """No log lines from MLflow and the database libraries (its "Creating initial MLflow database tables" would
    break the progress bar); called after mlflow's import, which sets its own levels."""
    for name in ("mlflow", "alembic", "sqlalchemy"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


@contextlib.contextmanager
def store_lock(uri: str, patience: float = 120.0) -> Iterator[None]:
    """For a SQLite store: hold ``.<database>.lock`` (beside it) while the store is opened, so that runs started
    at the same moment in a fresh folder do not all create (and break) its schema; the first creates it, the
    others wait.
    Other stores need no lock. After ``patience`` seconds the caller goes on without it."""
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
    if not path or not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        yield
        return
    folder, name = os.path.split(os.path.abspath(path))
    with _waiting_lock(os.path.join(folder, f".{name}.lock"), patience):
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


def lineage_experiment(experiment: str) -> str:
    """The experiment that holds the family trees of the runs of ``experiment``, apart from them, so that member
    runs stay out of the optimization runs' table, charts and grouping."""
    return f"{experiment}-lineage"


def member_run_name(event: Mapping[str, Any]) -> str:
    """A member's run name, unique in its optimization and short enough for the UI's name column: ``m3`` (born with
    the population) or ``m9 copy of m2`` (a copy that replaced a weak member; the rest is in its description)."""
    if event["event"] == "replace":
        return f"m{event['id']} copy of m{event['parent']}"
    return f"{member_prefix(event)}{event['id']}"


def member_prefix(event: Mapping[str, Any]) -> str:
    """``m`` before a network's id, ``gp`` before a Gaussian-process member's."""
    return "gp" if event.get("kind") == "gp" else "m"


def fork_run_name(fork: int, generation: int, weight: float, prefix: str = "m") -> str:
    """A merged fork's run name, nested under its parent's run, at most about 11 characters so that the UI shows it
    whole at that depth: generation first, so a parent's forks read in order, then the NES weight it was merged
    back with and its id, e.g. ``g2 w.73 m13`` (``w1``: it took the whole update). Its fitness is its ``fitness``
    metric and its description (a longer name is cut short in the UI's tree column)."""
    shown = f"{weight:.2f}".rstrip("0").rstrip(".").removeprefix("0") or "0"
    return f"g{generation} w{shown} {prefix}{fork}"


def _description(event: Mapping[str, Any], weight: float | None = None, fitness: float | None = None,
                 gain: float | None = None) -> str:
    """The sentence shown as a member or fork run's description in the MLflow UI."""
    at = f"at evaluation {event.get('evaluations', 0)}"
    m = member_prefix(event)
    if event["event"] == "birth":
        what = "A Gaussian-process member" if m == "gp" else "Member"
        return f"{what} {m}{event['id']}, in the population from the start."
    if event["event"] == "replace":
        return (f"Member m{event['id']}: a copy of m{event['parent']} (generation {event['generation']}, {at}) "
                f"that replaced the weaker member m{event['replaced']}.")
    if m == "gp":
        return (f"Fork gp{event['id']} of the Gaussian-process member gp{event['parent']}, generation "
                f"{event['generation']} ({at}): genes warp {event['warp']:.3g}, prior {event['prior']:.3g}, noise "
                f"floor {event['floor']:.3g}, kernel {event['family']}; fitted apart to holdout fitness {fitness:.4g} "
                f"(log density of the newest values{'' if gain is None else f'; gain over its parent {gain:.3g}'}), "
                f"then merged back with weight {weight:.2f}.")
    won = "" if gain is None else f" (gain over its parent {gain:.3g} nats)"
    return (f"Fork m{event['id']} of member m{event['parent']}, generation {event['generation']} ({at}): trained "
            f"apart to holdout fitness {fitness:.4g}{won}, then merged back into m{event['parent']} with NES weight "
            f"{weight:.2f}.")


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
                 tags: Mapping[str, str] | None = None, run_dir: str = "", resume: bool = False,
                 all_forks: bool = False, lineage: bool = True, results: str = "results stay in the run directory"):
        self.uri = uri
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
                   NES_ENSEMBLE_RESULTS=results)
        self._queue: queue.Queue = queue.Queue()
        self._sent = 0  # events sent so far
        self._proc = None
        problem = store_problem(uri)
        if problem:  # said at once: MLflow would retry opening it for minutes
            print(f"nes_ensemble: warning: MLflow tracking is off for this run ({problem}); {results}",
                  file=sys.stderr)
        else:
            try:
                self._proc = subprocess.Popen([sys.executable, "-m", "nes_ensemble.app.tracking"],
                                              stdin=subprocess.PIPE, env=env, start_new_session=True)
            except OSError as err:
                print(f"nes_ensemble: warning: MLflow tracking is off for this run (cannot start its writer: {err}); "
                      f"{results}", file=sys.stderr)
        self._feeder = threading.Thread(target=self._feed, daemon=True, name="nes_ensemble-tracker")
        self._feeder.start()
        self._send("start", uri=uri, experiment=experiment, run_name=run_name, params=flatten(params),
                   tags=dict(tags or {}), run_dir=run_dir, resume=resume, all_forks=all_forks, lineage=lineage)

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
        """Lineage into MLflow, given the run's whole event list: the events not sent yet are sent (a resumed run
        sends them all again from the start; the writer skips what the store already holds)."""
        if len(events) > self._sent:
            self._send("events", events=events[self._sent:])
            self._sent = len(events)

    def log_series(self, name: str, steps: list[int], values: list[float]) -> None:
        """One metric at many steps at once (a curve known only at the end of the run)."""
        pairs = [(int(s), float(v)) for s, v in zip(steps, values) if v is not None and math.isfinite(float(v))]
        self._send("series", name=name, steps=[p[0] for p in pairs], values=[p[1] for p in pairs])

    def log_artifacts(self, paths: list[str]) -> None:
        """Files to attach to the optimization run (missing ones are skipped); its description then shows the plots
        among them."""
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


def recorded_run(run_dir: str) -> str | None:
    """The id of the MLflow run that the tracker recorded in ``run_dir`` (None if it recorded none)."""
    try:
        with open(os.path.join(run_dir, RUN_RECORD)) as f:
            return json.load(f).get("run_id")
    except (OSError, ValueError):
        return None


class _Writer:
    """The writer process's side: the MLflow calls, each guarded so that a broken store never stops a run.

    The optimization run goes to the configured experiment; its family tree to the lineage experiment: a run
    named like the optimization run, its members nested under it, and under each member the forks merged back
    into it with some weight (every fork with ``all_forks``). A fork's run is written at its merge, when its
    weight is known; the merge's full record (every fork's weight and fitness) is a tag of the parent's run.
    """

    def __init__(self) -> None:
        self.client = None
        self.run_id: str | None = None
        self.lineage_id: str | None = None  # the root of the family tree, in the lineage experiment
        self.tree: dict[str, str] | None = None  # what planting the root needs, until the first member is born
        self.members: dict[int, str] = {}  # member id -> its run (members alive now)
        self.known: set[int] = set()  # every member or fork id that has a run (a resumed run re-sends its events)
        self.merged: set[tuple[int, int]] = set()  # (member, generation) of the merges written
        self.forks: dict[int, dict] = {}  # fork id -> its fork event, until its merge
        self.runs_start: dict[str, int] = {}  # run id -> its start time (ms), which orders the UI's lists
        self.all_forks = False
        self._failed = False

    def start(self, uri: str, experiment: str, run_name: str, params: Mapping[str, Any], tags: dict,
              run_dir: str, resume: bool, all_forks: bool = False, lineage: bool = True) -> None:
        # an unreachable server must not stall the run for minutes of retries
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from mlflow.entities import Metric, Param, RunTag
            from mlflow.tracking import MlflowClient

        _quiet_mlflow()  # a store error is reported once, by handle
        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        self.all_forks = all_forks
        with store_lock(uri):
            self.client = MlflowClient(tracking_uri=uri)
            self.client.search_experiments(max_results=1)  # opens (and, the first time, creates) the store
        record = os.path.join(run_dir, RUN_RECORD) if run_dir else ""
        saved = {}
        if resume and record and os.path.exists(record):
            with open(record) as f:
                saved = json.load(f)
        if saved.get("run_id"):  # resuming: the interrupted run goes on, and so does its family tree
            self._resume(saved["run_id"], saved.get("lineage_run_id"), uri, record)
            return
        with store_lock(uri):  # two runs must not both create an experiment
            exp_id = _experiment_id(self.client, experiment)
        self.run_id = self.client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
        if lineage:
            self.tree = {"uri": uri, "experiment": experiment, "run_name": run_name, "record": record}
        self._record(uri, record)
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow accepts at most 100 params per batch
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def _record(self, uri: str, record: str) -> None:
        if record:
            with open(record, "w") as f:
                json.dump({"run_id": self.run_id, "lineage_run_id": self.lineage_id, "uri": uri}, f)

    def _plant(self) -> None:
        """The root of the run's family tree in the lineage experiment, and a link to it on the run: planted at
        the first member's birth, so that a strategy without a population (sgd, the baselines) has none."""
        tree, self.tree = self.tree, None
        experiment, run_name = tree["experiment"], tree["run_name"]
        with store_lock(tree["uri"]):
            self.tree_experiment = _experiment_id(self.client, lineage_experiment(experiment))
        self.lineage_id = self.client.create_run(self.tree_experiment, run_name=run_name, start_time=int(
            time.time() * 1000), tags={
            "optimization_run": self.run_id, "kind": "optimization",
            "mlflow.note.content": f"Family tree of the optimization run {run_name} ({self.run_id}) of "
                                   f"experiment {experiment}: its members, and the forks merged back into them."}
        ).info.run_id
        self.runs_start[self.lineage_id] = self.client.get_run(self.lineage_id).info.start_time
        self.client.set_tag(self.run_id, "mlflow.note.content",
                            f"Family tree (members, forks, merges): [{run_name} in experiment "
                            f"{lineage_experiment(experiment)}](#/experiments/{self.tree_experiment}/runs/"
                            f"{self.lineage_id}).")
        self.client.set_tag(self.run_id, "lineage_run", self.lineage_id)
        self._record(tree["uri"], tree["record"])

    def _resume(self, run_id: str, lineage_id: str | None, uri: str, record: str) -> None:
        self.run_id = run_id
        self.client.update_run(run_id, status="RUNNING")
        if not lineage_id:  # no member born yet (or a run recorded before trees had their own experiment)
            run = self.client.get_run(run_id)
            self.tree = {"uri": uri, "experiment": self.client.get_experiment(run.info.experiment_id).name,
                         "run_name": run.info.run_name, "record": record}
            return
        self.lineage_id = lineage_id
        root = self.client.get_run(lineage_id).info
        self.tree_experiment, self.runs_start[lineage_id] = root.experiment_id, root.start_time
        self.client.update_run(lineage_id, status="RUNNING")
        for run in self.client.search_runs([self.tree_experiment], f"tags.optimization_run = '{run_id}'",
                                           max_results=50000):
            if "member_id" not in run.data.tags:
                continue
            member = int(run.data.tags["member_id"])
            self.known.add(member)
            self.merged.update((member, int(key.rsplit("generation", 1)[1])) for key in run.data.tags
                               if key.startswith("merge.generation"))
            self.runs_start[run.info.run_id] = run.info.start_time
            if run.data.tags.get("kind") != "fork" and run.info.status != "FINISHED":  # alive when it stopped
                self.members[member] = run.info.run_id
                self.client.update_run(run.info.run_id, status="RUNNING")

    def handle(self, message: dict) -> None:
        """Carry out one message of the optimization process, unless the store has failed before."""
        if self._failed or (self.run_id is None and message["op"] != "start"):
            return
        op = message.pop("op")
        handler = {"start": self.start, "metrics": self.log_metrics, "events": self.log_events,
                   "series": self.log_series, "artifacts": self.log_artifacts, "finish": self.finish}[op]
        try:
            handler(**message)
        except Exception as err:  # any store error: report once, keep quiet after
            self._failed = True
            detail = " ".join(str(err).split("[SQL:")[0].split())  # one line, without the statement
            text = (f"MLflow tracking is off for the rest of this run ({type(err).__name__}: {detail[:300]}); "
                    + os.environ.get("NES_ENSEMBLE_RESULTS", "results stay in the run directory"))
            print(f"nes_ensemble: warning: {text}", file=sys.stderr, flush=True)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[self._Metric(k, v, now, step) for k, v in metrics.items()])

    def log_events(self, events: list[dict]) -> None:
        if self.lineage_id is None and self.tree is None:
            return
        for event in events:
            self._event(event)

    def log_series(self, name: str, steps: list[int], values: list[float]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._Metric(name, v, now, s) for s, v in zip(steps, values)]
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])

    def log_artifacts(self, paths: list[str]) -> None:
        """Attach the files to the run, and show its plots in its description (the UI renders it as Markdown; the
        images come from the tracking server's artifact route)."""
        for path in paths:
            self.client.log_artifact(self.run_id, path)
        plots = [os.path.basename(p) for p in paths if p.endswith(".png")]
        if plots:
            note = self.client.get_run(self.run_id).data.tags.get("mlflow.note.content", "")
            shown = "\n\n".join(f"![{name}](get-artifact?path={name}&run_uuid={self.run_id})" for name in plots
                                  if f"path={name}&" not in note)
            if shown:
                self.client.set_tag(self.run_id, "mlflow.note.content", (note + "\n\n" + shown).strip()[:5000])

    def finish(self, status: str) -> None:
        for run in self.members.values():
            self.client.set_terminated(run, status)
        if self.lineage_id is not None:
            self.client.set_terminated(self.lineage_id, status)
        self.client.set_terminated(self.run_id, status)
        self.members.clear()

    def _new_run(self, event: dict, parent_run: str, name: str, description: str, kind: str,
                 order: int | None = None) -> str:
        """A member's or fork's run; ``order`` is its start time (ms), set so that the UI, which lists the newest
        first, lists a population's members and a member's forks in the order they came (m0 first, g1 first)."""
        self.known.add(event["id"])
        tags = {"mlflow.parentRunId": parent_run, "optimization_run": self.run_id, "member_id": str(event["id"]),
                "parent_id": str(event.get("parent")), "generation": str(event["generation"]),
                "born_at_evaluation": str(event.get("evaluations", 0)), "kind": kind,
                "mlflow.note.content": description}
        if "replaced" in event:
            tags["replaced"] = str(event["replaced"])
        run = self.client.create_run(self.tree_experiment, run_name=name, tags=tags, start_time=order).info.run_id
        self.runs_start[run] = order if order is not None else int(time.time() * 1000)
        keys = ("kind", "width", "depth", "lr", "weight_decay", "sparsity", "wider", "warp", "prior", "floor", "family")
        self.client.log_batch(run, params=[self._Param(k, str(event[k])) for k in keys if k in event])
        return run

    def _event(self, event: dict) -> None:
        kind, step = event["event"], int(event.get("evaluations", 0))
        if kind in ("birth", "replace"):
            if self.lineage_id is None:
                self._plant()
            if event["id"] not in self.known:  # (a later member is "older": the list reads m0, m1, ... down)
                order = self.runs_start[self.lineage_id] - 1 - event["id"]
                self.members[event["id"]] = self._new_run(event, self.lineage_id, member_run_name(event),
                                                          _description(event), "copy" if kind == "replace" else kind,
                                                          order=order)
            if kind == "replace" and event["replaced"] in self.members:
                self.client.set_terminated(self.members.pop(event["replaced"]), "FINISHED")
        elif kind == "fork":
            if event["id"] not in self.known:
                self.forks[event["id"]] = event
        elif kind == "merge":
            self._merge(event, step)
        else:  # restarts and other plain events: a tag on the optimization run
            self.client.set_tag(self.run_id, f"event.{kind}.{step}", json.dumps(event)[:5000])

    def _merge(self, event: dict, step: int) -> None:
        """The merge's record on the parent's run, and a run under it for each fork merged with some weight."""
        parent, key = self.members.get(event["id"]), (event["id"], event["generation"])
        forks = [self.forks.pop(f, None) for f in event["forks"]]
        if parent is None or key in self.merged:
            return
        self.merged.add(key)
        now, Metric = int(time.time() * 1000), self._Metric
        detail = {"forks": event["forks"], "weights": event["weights"], "fork_fitness": event["fork_fitness"],
                  "fitness_before": event["fitness_before"], "fitness_after": event["fitness_after"],
                  **({"gains": event["gains"]} if "gains" in event else {})}
        values = {"fitness_before_merge": event["fitness_before"], "fitness_after_merge": event["fitness_after"],
                  **{k: event[k] for k in ("lr", "width", "warp", "prior", "floor") if k in event}}
        self.client.log_batch(parent, metrics=[Metric(k, v, now, step) for k, v in values.items() if _finite(v)],
            tags=[self._RunTag(f"merge.generation{event['generation']}", json.dumps(detail))])
        gains = event.get("gains", [None] * len(forks))
        for fork, weight, fitness, gain in zip(forks, event["weights"], event["fork_fitness"], gains):
            if fork is None or fork["id"] in self.known or (weight <= 0 and not self.all_forks):
                continue
            run = self._new_run(fork, parent, fork_run_name(fork["id"], fork["generation"], weight,
                                                            member_prefix(fork)),
                                _description(fork, weight, fitness, gain), "fork",
                                order=self.runs_start.get(parent, now) - fork["generation"])
            self.client.log_batch(run, metrics=[Metric("merge_weight", weight, now, step)] + (
                [Metric("fitness", fitness, now, step)] if _finite(fitness) else []) + (
                [Metric("gain", gain, now, step)] if _finite(gain) else []),
                                  tags=[self._RunTag("merged_into", str(event["id"]))])
            self.client.set_terminated(run, "FINISHED", end_time=self.runs_start[run] + 1)


def _finite(value: Any) -> bool:
    """Whether a value can be an MLflow metric (a fork whose fit failed has fitness -inf)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


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
