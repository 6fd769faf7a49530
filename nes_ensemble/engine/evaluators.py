"""Workers that run the objective: a pool of local processes, or Ray tasks on a cluster.

Each pool takes points (``submit``) and hands back finished ones (``wait``) as ``(kind, value)``:
``ok`` with the value, ``failed`` with the objective's error, or ``died`` when the worker itself
died. ``loop.drive_parallel`` keeps ``evaluator.n_workers`` evaluations in flight on one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait as connection_wait
from typing import Any, Callable, Iterator

import numpy as np

from .remote import call

EVALUATORS = ("inline", "processes", "ray")
MAX_REQUEUES = 3  # a point whose worker dies more often than this is recorded as a failed evaluation


def make_pool(fn: Callable, ev: Any) -> "ProcessPool | RayPool":
    """The workers the ``evaluator`` config names (processes or ray), each holding the objective ``fn``."""
    return RayPool(fn, ev) if ev.name == "ray" else ProcessPool(fn, ev.n_workers, ev.start_method, ev.timeout)


@contextlib.contextmanager
def _main_importable() -> Iterator[None]:
    """While workers start: hide a main script's ``__file__`` that names no file (a script read from standard
    input or a heredoc says '<stdin>'), which a forkserver or spawn worker would otherwise try to run and die
    on. The objective travels by cloudpickle, so the workers never need the main script."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    bogus = path is not None and getattr(getattr(main, "__spec__", None), "name", None) is None \
        and not os.path.isfile(path)
    if bogus:
        del main.__file__
    try:
        yield
    finally:
        if bogus:
            main.__file__ = path


class ProcessPool:
    """Local worker processes, one evaluation at a time each, each on its own pipe.

    Knowing which worker holds which point lets the pool blame a death on the one point that caused
    it (a healthy point never shares the blame), stop an evaluation that runs past ``timeout`` by
    killing its worker only, and replace any worker that ended. Workers ignore Ctrl-C (the driver
    decides) and die with the driver: a killed run leaves no process behind.
    """

    def __init__(self, fn: Callable, n_workers: int, start_method: str = "forkserver", timeout: float = 0.0):
        import cloudpickle

        try:
            self.payload = cloudpickle.dumps(fn)
        except Exception as err:
            raise ValueError(f"evaluator=processes sends the objective to worker processes, so it must be "
                             f"picklable, and {fn!r} is not ({type(err).__name__}: {err}). Open locks, files or "
                             "connections inside the objective instead of closing over them, or use "
                             "evaluator=inline") from None
        self.n_workers, self.timeout = n_workers, timeout
        self.start_method, self.context = start_method, multiprocessing.get_context(start_method)
        self.finished = 0  # evaluations any worker has returned
        self.idle: list[_Worker] = []
        self.busy: dict[int, _Task] = {}
        self.handles = 0
        self.failed_starts = 0  # workers in a row that ended before they were ready

    def submit(self, x: np.ndarray) -> int:
        """Start evaluating x on an idle worker (a new one if none is idle); returns the handle to wait on."""
        self.handles += 1
        self._dispatch(self.handles, x)
        return self.handles

    def _dispatch(self, handle: int, x: np.ndarray) -> None:
        worker = self.idle.pop() if self.idle else self._start()
        worker.conn.send(x)
        self.busy[handle] = _Task(worker, x, time.monotonic())

    def _start(self) -> "_Worker":
        with _main_importable():
            ours, theirs = self.context.Pipe()
            process = self.context.Process(target=_work, args=(theirs, self.payload), daemon=True)
            process.start()
        theirs.close()
        return _Worker(process, ours)

    def wait(self, handles: list[int]) -> list[tuple[int, tuple[str, Any]]]:
        """The evaluations among ``handles`` that have ended (at least one): ``ok`` with the value, ``failed`` with
        the objective's error or the time-out, ``died`` when the worker ended during that evaluation."""
        while True:
            tasks = {h: self.busy[h] for h in handles}
            waits = [obj for t in tasks.values() for obj in (t.worker.conn, t.worker.process.sentinel)]
            left = None
            if self.timeout > 0:
                left = max(0.0, min(t.started + self.timeout for t in tasks.values()) - time.monotonic())
            ready = set(connection_wait(waits, timeout=left))
            out = []
            for h, task in tasks.items():
                outcome = self._outcome(task, ready)
                if outcome is None:
                    continue
                del self.busy[h]
                if outcome[0] == "lost":  # the worker ended before it was ready: not this point's fault
                    self._dispatch(h, task.x)
                else:
                    out.append((h, outcome))
            if out:
                return out

    def _outcome(self, task: "_Task", ready: set) -> tuple[str, Any] | None:
        worker = task.worker
        if worker.conn in ready:
            try:
                kind, value = worker.conn.recv()
                if kind == "ready":  # the clock of a new worker starts once it holds the objective
                    worker.ready, self.failed_starts, task.started = True, 0, time.monotonic()
                    if not worker.conn.poll():
                        return None
                    kind, value = worker.conn.recv()
            except (EOFError, OSError):
                return self._ended(worker)
            if kind == "contract":  # the objective broke its contract (e.g. returned a string): stop the run
                raise ValueError(value)
            self.finished += 1
            self.idle.append(worker)
            return kind, value
        if worker.process.sentinel in ready:
            return self._ended(worker)
        if worker.ready and self.timeout > 0 and time.monotonic() - task.started >= self.timeout:
            worker.kill()
            return "failed", f"timed out after {self.timeout:g} s"
        return None

    def _ended(self, worker: "_Worker") -> tuple[str, Any]:
        worker.process.join(1.0)
        code = worker.process.exitcode
        worker.kill()
        if worker.ready:
            return "died", f"the worker process ended during this evaluation (exit code {code})"
        self.failed_starts += 1
        if not self.finished and self.failed_starts >= 3 and self.start_method != "fork":
            raise RuntimeError(
                f"the worker processes died before returning a single evaluation. A worker started by "
                f"'{self.start_method}' imports your main script: if the script calls optimize at top "
                "level, put that under `if __name__ == \"__main__\":`. If the objective itself kills "
                "the process, run it inline (evaluator=inline) to see the error.")
        if self.failed_starts >= 10:
            raise RuntimeError("worker processes keep ending before they are ready (10 in a row); run the "
                               "objective inline (evaluator=inline) to see why")
        return "lost", None

    def close(self) -> None:
        """Stop every worker: idle ones are asked to leave, busy ones (evaluations no one will read) are killed."""
        for worker in self.idle:
            with contextlib.suppress(OSError):
                worker.conn.send(None)
        for worker in self.idle:
            worker.process.join(2.0)
            worker.kill()
        for task in self.busy.values():
            task.worker.kill()
        self.idle, self.busy = [], {}


class _Worker:
    """One worker process and the driver's end of its pipe."""

    def __init__(self, process: Any, conn: Any):
        self.process, self.conn, self.ready = process, conn, False

    def kill(self) -> None:
        """End the process (if it still runs) and close the pipe."""
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5.0)
        self.conn.close()


@dataclasses.dataclass
class _Task:
    """A point on a worker, and since when (the worker's start-up does not count against the time limit)."""

    worker: _Worker
    x: np.ndarray
    started: float


def _work(conn: Any, payload: bytes) -> None:
    """A worker's life: load the objective, then evaluate each point the driver sends until it sends None."""
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the run; the driver decides what that means
    import cloudpickle

    fn = cloudpickle.loads(payload)  # (cloudpickle: closures and lambdas travel too)
    conn.send(("ready", None))
    while True:
        try:
            x = conn.recv()
        except (EOFError, OSError):
            return
        if x is None:
            return
        try:
            conn.send(("ok", call(fn, x)))
        except (KeyboardInterrupt, SystemExit) as err:  # raised by the objective itself: its failure, told once
            conn.send(("failed", f"the objective raised {type(err).__name__}({_args(err)})"))
        except Exception as err:
            kind = "contract" if isinstance(err, ValueError) and str(err).startswith("fn returned") else "failed"
            conn.send((kind, f"{type(err).__name__}: {err}" if kind == "failed" else str(err)))


def _args(err: BaseException) -> str:
    return ", ".join(repr(a) for a in err.args)


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent ends (elsewhere a no-op; the pipe's end stops it later)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class RayPool:
    """Ray tasks: ``evaluator.ray_address`` joins a running cluster, else a local one with ``ray_cpus`` CPUs."""

    def __init__(self, fn: Callable, ev: Any):
        try:
            import ray
        except ImportError:
            raise ValueError('evaluator=ray needs ray: pip install "nes_ensemble[ray]"') from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict[str, Any] = {"address": ev.ray_address} if ev.ray_address else {
                "num_cpus": ev.ray_cpus or ev.n_workers, "include_dashboard": False}
            ray.init(ignore_reinit_error=True, log_to_driver=False, **kwargs)
        self.task = ray.remote(max_retries=0)(call)
        self.fn_ref = ray.put(fn)
        self.timeout, self.started = ev.timeout, {}

    def submit(self, x: np.ndarray) -> Any:
        """Start evaluating x as a Ray task."""
        ref = self.task.remote(self.fn_ref, x)
        self.started[ref] = time.monotonic()
        return ref

    def wait(self, handles: list[Any]) -> list[tuple[Any, tuple[str, Any]]]:
        """The tasks among ``handles`` that have finished (at least one), with their outcome; a task past
        ``evaluator.timeout`` is cancelled and failed."""
        ray = self.ray
        while True:
            left = None
            if self.timeout > 0:
                left = max(0.0, min(self.started[h] for h in handles) + self.timeout - time.monotonic())
            done, _ = ray.wait(handles, num_returns=1, timeout=left)
            late = [h for h in handles if h not in done and self.timeout > 0
                    and time.monotonic() - self.started[h] >= self.timeout]
            if done or late:
                break
        out = []
        for ref in late:
            ray.cancel(ref, force=True)
            self.started.pop(ref, None)
            out.append((ref, ("failed", f"timed out after {self.timeout:g} s")))
        for ref in done:
            self.started.pop(ref, None)
            try:
                out.append((ref, ("ok", ray.get(ref))))
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                    ray.exceptions.RaySystemError) as err:
                out.append((ref, ("died", f"{type(err).__name__}")))
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if getattr(err, "cause", None) is not None else err
                out.append((ref, ("failed", f"{type(cause).__name__}: {cause}")))
        return out

    def close(self) -> None:
        """Shut down the local Ray this pool started, if it started one."""
        if self.started:
            self.ray.shutdown()
