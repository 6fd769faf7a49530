"""Run the objective: in this process, in a pool of local processes, or as Ray tasks on a cluster.

``inline`` is ``optimizer.drive``. ``processes`` and ``ray`` keep ``evaluator.n_workers``
evaluations in flight: whenever one finishes it is told at once and the free worker gets the next
proposal (``ask(1)``), so the optimizer plans with what has arrived and the pending points are
known to the search. Results are told in the order they finish, so with several workers a run is
reproducible only as far as the finishing order is (``n_workers=1`` gives the inline run exactly).
A worker that dies has its evaluation re-queued (an ``evaluator`` event records it); an
exception in the objective is a failed evaluation, as inline.
"""

from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

import numpy as np

from .optimizer import Optimizer, failure_streak
from .remote import call, call_installed, install

EVALUATORS = ("inline", "processes", "ray")
MAX_REQUEUES = 3  # a point whose worker dies more often than this is recorded as a failed evaluation


def drive_parallel(opt: Optimizer, fn: Callable[[np.ndarray], float], budget: int,
                   callback: Callable[[Optimizer], None] | None = None) -> None:
    """Evaluate ``fn`` (one x in the user's box -> float, user sign) on ``evaluator.n_workers`` workers."""
    ev = opt.cfg.evaluator
    pool = _RayPool(fn, ev) if ev.name == "ray" else _ProcessPool(fn, ev.n_workers, ev.start_method)
    streak, told_since = 0, 0
    try:
        in_flight: dict[Any, np.ndarray] = {}
        retry: list[np.ndarray] = []
        deaths: dict[bytes, int] = {}
        while opt.n_evaluations < budget:
            while len(in_flight) < ev.n_workers and opt.n_evaluations + len(in_flight) < budget:
                if retry:
                    x = retry.pop(0)
                else:
                    with opt.bookkeeping():
                        x = opt.ask(1)[0]
                in_flight[pool.submit(x)] = x
            for handle, outcome in pool.wait(list(in_flight)):
                x = in_flight.pop(handle)
                kind, value = outcome
                if kind == "died":  # the worker, not the objective, failed: evaluate the point again
                    opt.events.append({"event": "worker_died", "evaluations": opt.n_evaluations,
                                       "x": [float(v) for v in x], "error": value})
                    deaths[x.tobytes()] = deaths.get(x.tobytes(), 0) + 1
                    if deaths[x.tobytes()] <= MAX_REQUEUES:
                        retry.append(x)
                        continue
                    kind, value = "failed", f"the worker died {MAX_REQUEUES + 1} times on this point ({value})"
                y, reason = (value, "") if kind == "ok" else (math.nan, value)
                if kind == "ok" and not math.isfinite(y):
                    y, reason = math.nan, "non-finite value"
                with opt.bookkeeping():
                    opt.tell(x[None], [y], [reason])
                told_since += 1
                streak = failure_streak(opt, streak, [y], reason)
            if callback is not None and told_since >= ev.n_workers:
                with opt.bookkeeping():
                    callback(opt)
                told_since = 0
        if callback is not None and told_since:
            with opt.bookkeeping():
                callback(opt)
    finally:
        opt.pending.clear()
        pool.close()


class _ProcessPool:
    """concurrent.futures over local processes."""

    def __init__(self, fn: Callable, n_workers: int, start_method: str = "forkserver"):
        import cloudpickle

        self.payload, self.n_workers = cloudpickle.dumps(fn), n_workers
        self.start_method, self.context = start_method, multiprocessing.get_context(start_method)
        self.finished = 0  # evaluations any worker has returned
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.n_workers, mp_context=self.context, initializer=install,
                                   initargs=(self.payload,))

    def submit(self, x: np.ndarray) -> Future:
        try:
            return self.executor.submit(call_installed, x)
        except BrokenProcessPool:  # a worker died earlier: start a fresh pool
            self.executor = self._start()
            return self.executor.submit(call_installed, x)

    def wait(self, handles: list[Future]) -> list[tuple[Future, tuple[str, Any]]]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        out = []
        for f in done:
            try:
                out.append((f, ("ok", f.result())))
                self.finished += 1
            except BrokenProcessPool as err:
                if not self.finished and self.start_method != "fork":
                    raise RuntimeError(
                        f"the worker processes died before returning a single evaluation. A worker started by "
                        f"'{self.start_method}' imports your main script: if the script calls optimize at top "
                        "level, put that under `if __name__ == \"__main__\":`. If the objective itself kills "
                        "the process, run it inline (evaluator=inline) to see the error.") from err
                out.append((f, ("died", f"{type(err).__name__}: {err}")))
            except Exception as err:
                if "fn returned" in str(err):
                    raise
                self.finished += 1
                out.append((f, ("failed", f"{type(err).__name__}: {err}")))
        return out

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class _RayPool:
    """Ray tasks: ``evaluator.ray_address`` joins a running cluster, else a local one with ``ray_cpus`` CPUs."""

    def __init__(self, fn: Callable, ev: Any):
        try:
            import ray
        except ImportError:
            raise ValueError('evaluator=ray needs ray: pip install -e ".[ray]"') from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict[str, Any] = {"address": ev.ray_address} if ev.ray_address else {
                "num_cpus": ev.ray_cpus or ev.n_workers, "include_dashboard": False}
            ray.init(ignore_reinit_error=True, log_to_driver=False, **kwargs)
        self.task = ray.remote(max_retries=0)(call)
        self.fn_ref = ray.put(fn)

    def submit(self, x: np.ndarray) -> Any:
        return self.task.remote(self.fn_ref, x)

    def wait(self, handles: list[Any]) -> list[tuple[Any, tuple[str, Any]]]:
        ray = self.ray
        done, _ = ray.wait(handles, num_returns=1)
        out = []
        for ref in done:
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
        if self.started:
            self.ray.shutdown()
