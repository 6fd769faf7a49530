"""Workers that run the objective: a pool of local processes, or Ray tasks on a cluster.

Each pool takes points (``submit``) and hands back finished ones (``wait``) as ``(kind, value)``:
``ok`` with the value, ``failed`` with the objective's error, or ``died`` when the worker itself
died. ``loop.drive_parallel`` keeps ``evaluator.n_workers`` evaluations in flight on one.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator

import numpy as np

from .remote import call, call_installed, install

EVALUATORS = ("inline", "processes", "ray")
MAX_REQUEUES = 3  # a point whose worker dies more often than this is recorded as a failed evaluation


def make_pool(fn: Callable, ev: Any) -> "ProcessPool | RayPool":
    """The workers the ``evaluator`` config names (processes or ray), each holding the objective ``fn``."""
    return RayPool(fn, ev) if ev.name == "ray" else ProcessPool(fn, ev.n_workers, ev.start_method)


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
    """concurrent.futures over local processes."""

    def __init__(self, fn: Callable, n_workers: int, start_method: str = "forkserver"):
        import cloudpickle

        try:
            self.payload = cloudpickle.dumps(fn)
        except Exception as err:
            raise ValueError(f"evaluator=processes sends the objective to worker processes, so it must be "
                             f"picklable, and {fn!r} is not ({type(err).__name__}: {err}). Open locks, files or "
                             "connections inside the objective instead of closing over them, or use "
                             "evaluator=inline") from None
        self.n_workers = n_workers
        self.start_method, self.context = start_method, multiprocessing.get_context(start_method)
        self.finished = 0  # evaluations any worker has returned
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.n_workers, mp_context=self.context, initializer=install,
                                   initargs=(self.payload,))

    def submit(self, x: np.ndarray) -> Future:
        """Start evaluating x on a free worker (a fresh pool if a worker died)."""
        with _main_importable():
            try:
                return self.executor.submit(call_installed, x)
            except BrokenProcessPool:  # a worker died earlier: start a fresh pool
                self.executor = self._start()
                return self.executor.submit(call_installed, x)

    def wait(self, handles: list[Future]) -> list[tuple[Future, tuple[str, Any]]]:
        """The evaluations among ``handles`` that have finished (at least one), with their outcome."""
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
        """Stop the workers (after the evaluations under way)."""
        self.executor.shutdown(wait=True, cancel_futures=True)


class RayPool:
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
        """Start evaluating x as a Ray task."""
        return self.task.remote(self.fn_ref, x)

    def wait(self, handles: list[Any]) -> list[tuple[Any, tuple[str, Any]]]:
        """The tasks among ``handles`` that have finished (at least one), with their outcome."""
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
        """Shut down the local Ray this pool started, if it started one."""
        if self.started:
            self.ray.shutdown()
