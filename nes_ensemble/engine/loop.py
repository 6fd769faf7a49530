"""Drive a budget of evaluations through an optimizer: inline or on worker processes / Ray.

The loop asks, evaluates and tells until the pool holds the budget. It records failures (an
exception, a NaN / inf, a time-out) as failed evaluations and stops with ``EvaluationError`` after
``evaluator.max_failures`` in a row. A ``StopFlag`` lets a signal handler stop the run cleanly: at
once while the objective runs, else once the optimizer's bookkeeping (ask / tell / checkpoint) is
done. Used by ``optimize`` and by the command line alike.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from typing import Any, Callable, Iterator, Protocol

import numpy as np

from .evaluators import MAX_REQUEUES, make_pool
from .remote import scalar


class EvaluationError(RuntimeError):
    """The objective failed ``evaluator.max_failures`` times in a row; every evaluation so far is kept (in the
    journal, and from ``optimize`` in the exception's ``result``)."""


class Driven(Protocol):
    """What the loop needs of an optimizer."""

    cfg: Any
    stopped: bool  # set by ``Optimizer.stop``: the loop ends once the evaluations in flight are told

    @property
    def n_evaluations(self) -> int:
        """Evaluations told so far."""

    def ask_points(self, n: int | None = None) -> np.ndarray:
        """The next points to evaluate, as an array."""

    def tell(self, X: np.ndarray, y: Any, reasons: Any = None) -> None:
        """Their values (NaN: failed, with the reason)."""

    def drop_pending(self) -> None:
        """Forget points asked and never to be told."""

    def record_event(self, event: dict) -> None:
        """Add a driver's event to the lineage."""


class StopFlag:
    """A stop requested from a signal handler; it waits while the optimizer's bookkeeping is under way."""

    def __init__(self) -> None:
        self.busy = False
        self.requested = False

    @contextlib.contextmanager
    def bookkeeping(self) -> Iterator[None]:
        """Mark ask / tell / checkpointing as under way: a stop requested meanwhile waits until it is done."""
        self.busy = True
        try:
            yield
        finally:
            self.busy = False

    def request(self) -> None:
        """Stop: now (KeyboardInterrupt) unless bookkeeping is under way, else at the next check."""
        if self.busy:
            self.requested = True
        else:
            raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt if a stop was requested."""
        if self.requested:
            self.requested = False
            raise KeyboardInterrupt


class FailureStreak:
    """Counts consecutive failed evaluations; raises ``EvaluationError`` at ``limit`` (0: never)."""

    def __init__(self, limit: int):
        self.limit, self.count = limit, 0

    def add(self, y: Any, reason: str, opt: Driven) -> None:
        """Count these values (all failed: the streak grows; any success: it ends)."""
        failed = ~np.isfinite(np.asarray(y, dtype=float))
        self.count = self.count + int(failed.sum()) if failed.all() else 0
        if self.limit and self.count >= self.limit:
            opt.drop_pending()
            raise EvaluationError(f"the objective failed {self.count} times in a row (last: {reason}); stopping "
                                  f"after {opt.n_evaluations} evaluations, all kept. Raise evaluator.max_failures "
                                  "(0 = never stop) if failures are expected")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's CPU threads set to ``n`` while the block runs (None: left as they are), then restored: a run's
    small tensors gain nothing from more threads, and several runs on one machine stop fighting over cores."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(opt: Driven, fn: Callable, budget: int, callback: Callable[[Any], None] | None = None,
        batched: bool = False, stop: StopFlag | None = None) -> None:
    """Evaluate ``fn`` (one x in the user's box -> float in the user's sign; ``batched``: [m, n] -> [m]) until the
    pool holds ``budget`` evaluations, inline or on the workers ``evaluator`` names."""
    if opt.cfg.evaluator.name == "inline":
        drive(opt, _vectorized(fn, batched), budget, callback, batched, stop)
    elif batched:
        raise ValueError(f"evaluator={opt.cfg.evaluator.name}: evaluates one point per worker; use batched=False")
    else:
        drive_parallel(opt, fn, budget, callback, stop)


def _vectorized(fn: Callable, batched: bool) -> Callable[[np.ndarray], np.ndarray]:
    def evaluate(X: np.ndarray) -> np.ndarray:
        if batched:
            y = np.asarray(fn(X), dtype=float).reshape(-1)
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"fn returned {y.shape[0]} values for {X.shape[0]} points (batched=True)")
            return y
        return np.array([scalar(fn(x)) for x in X])  # called with one row at a time by drive

    return evaluate


def drive(opt: Driven, evaluate: Callable[[np.ndarray], np.ndarray], budget: int,
          callback: Callable[[Any], None] | None = None, batched: bool = False, stop: StopFlag | None = None) -> None:
    """Run the ask / evaluate / tell loop in this process until ``budget`` evaluations are in the pool.

    ``evaluate`` maps points [m, n] to values [m] in the user's sign. Unless ``batched``, it is
    called one point at a time and each result is told at once, so a crash loses nothing evaluated
    before it. An evaluation that raises, times out (``evaluator.timeout``) or returns NaN / inf is
    told as failed with its reason and counts against the budget; ``evaluator.retries`` re-runs
    raising or timed-out ones first. Proposals asked beyond the budget are dropped unevaluated.
    """
    ev = opt.cfg.evaluator
    stop = stop or StopFlag()
    streak = FailureStreak(ev.max_failures)
    while opt.n_evaluations < budget and not opt.stopped:
        with stop.bookkeeping():
            X = opt.ask_points()[: budget - opt.n_evaluations]
        for group in [X] if batched else [x[None] for x in X]:
            stop.check()
            y, reasons = _evaluate(evaluate, group.copy(), ev.timeout, ev.retries)  # fn may change its x in place
            with stop.bookkeeping():
                opt.tell(group, y, reasons)
            streak.add(y, reasons[-1], opt)
        opt.drop_pending()
        if callback is not None:
            with stop.bookkeeping():
                callback(opt)


def drive_parallel(opt: Driven, fn: Callable[[np.ndarray], float], budget: int,
                   callback: Callable[[Any], None] | None = None, stop: StopFlag | None = None) -> None:
    """Evaluate ``fn`` (one x in the user's box -> float, user sign) on ``evaluator.n_workers`` workers.

    Whenever an evaluation finishes it is told at once and the free worker gets the next proposal
    (``ask(1)``), so the optimizer plans with what has arrived and knows the pending points. Results
    are told in the order they finish, so with several workers a run repeats only as far as that
    order does (``n_workers=1`` gives the inline run exactly). A worker that dies has its point
    evaluated again (a ``worker_died`` event records it), up to ``MAX_REQUEUES`` times.
    """
    ev = opt.cfg.evaluator
    stop = stop or StopFlag()
    pool = make_pool(fn, ev)
    streak, told_since = FailureStreak(ev.max_failures), 0
    try:
        in_flight: dict[Any, np.ndarray] = {}
        retry: list[np.ndarray] = []
        deaths: dict[bytes, int] = {}
        while opt.n_evaluations < budget and (in_flight or not opt.stopped):  # a stop waits for those in flight
            while len(in_flight) < ev.n_workers and opt.n_evaluations + len(in_flight) < budget and not opt.stopped:
                if retry:
                    x = retry.pop(0)
                else:
                    with stop.bookkeeping():
                        x = opt.ask_points(1)[0]
                in_flight[pool.submit(x)] = x
            for handle, (kind, value) in pool.wait(list(in_flight)):
                x = in_flight.pop(handle)
                if kind == "died":  # the worker, not the objective, failed: evaluate the point again
                    opt.record_event({"event": "worker_died", "evaluations": opt.n_evaluations,
                                      "x": [float(v) for v in x], "error": value})
                    deaths[x.tobytes()] = deaths.get(x.tobytes(), 0) + 1
                    if deaths[x.tobytes()] <= MAX_REQUEUES:
                        retry.append(x)
                        continue
                    kind, value = "failed", f"the worker died {MAX_REQUEUES + 1} times on this point ({value})"
                y, reason = (value, "") if kind == "ok" else (math.nan, value)
                if kind == "ok" and not math.isfinite(y):
                    y, reason = math.nan, "non-finite value"
                with stop.bookkeeping():
                    opt.tell(x[None], [y], [reason])
                told_since += 1
                streak.add([y], reason, opt)
            if callback is not None and told_since >= ev.n_workers:
                with stop.bookkeeping():
                    callback(opt)
                told_since = 0
            stop.check()  # a stop requested during bookkeeping (a checkpoint write) takes effect here
        if callback is not None and told_since:
            with stop.bookkeeping():
                callback(opt)
    finally:
        opt.drop_pending()
        pool.close()


def _evaluate(evaluate: Callable[[np.ndarray], np.ndarray], X: np.ndarray, timeout: float,
              retries: int) -> tuple[np.ndarray, list[str]]:
    """Values [m] and failure reasons of ``evaluate(X)``, catching errors and enforcing the time limit."""
    reason = ""
    for _ in range(retries + 1):
        try:
            with _time_limit(timeout):
                y = np.asarray(evaluate(X), dtype=float).reshape(-1)
        except _Timeout:
            reason = f"timed out after {timeout:g} s"
            continue
        except SystemExit as err:  # sys.exit() in the objective: a stop of the run, not of the process
            raise EvaluationError(f"the objective called sys.exit({err.code!r}); stopped, every evaluation so far "
                                  "kept") from None
        except (KeyboardInterrupt, EvaluationError):
            raise
        except ValueError as err:
            if "fn returned" in str(err):  # a contract error of the user's function: say it, do not swallow it
                raise
            reason = f"{type(err).__name__}: {err}"
            continue
        except Exception as err:
            reason = f"{type(err).__name__}: {err}"
            continue
        y = np.where(np.isfinite(y), y, np.nan)
        return y, ["" if np.isfinite(v) else "non-finite value" for v in y]
    return np.full(len(X), np.nan), [reason] * len(X)


class _Timeout(Exception):
    pass


class _time_limit:
    """Raise _Timeout in the main thread after ``seconds`` (a no-op for 0 or outside the main thread)."""

    def __init__(self, seconds: float):
        self.seconds = seconds if threading.current_thread() is threading.main_thread() else 0.0

    def __enter__(self) -> None:
        if self.seconds > 0:
            def fire(signum: int, frame: Any) -> None:
                raise _Timeout()

            self.previous = signal.signal(signal.SIGALRM, fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: Any) -> None:
        if self.seconds > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
