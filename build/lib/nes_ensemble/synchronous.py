"""``optimize``: the synchronous interface, where the library calls the objective ``budget`` times.

It builds an ``Optimizer``, evaluates given settings first (``initial``), drives the loop inline or
on workers, and returns a ``Result``. With a named space the objective gets one dict of native
values per call; if the run stops with an exception, the exception carries the ``Result`` so far.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .config import check_budget
from .loop import run, torch_threads
from .optimizer import Optimizer
from .space import Space


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
             progress: bool = False, **overrides: Any) -> Result:
    """Maximize (or minimize) ``fn`` over ``bounds`` with exactly ``budget`` evaluations.

    ``bounds`` is a sequence of (low, high) pairs, and ``fn`` maps one x [n] to a float (``batched=True``:
    [m, n] -> [m]); or a space, a dict of ``ne.Float`` / ``ne.Int`` / ``ne.Categorical``, and ``fn`` maps one
    setting (a dict) to a float (``batched``: a list of dicts to m floats). ``initial`` settings (points or
    dicts) are evaluated first. Keyword ``overrides`` set config keys: ``ensemble={"members": 20}``,
    ``search__mode="original"``. ``callback(opt)`` runs after every round of evaluations; it may call
    ``opt.stop()`` to end the run early, and ``optimize`` still returns the Result. ``progress=True`` shows a
    progress bar. ``evaluator="processes"`` or ``"ray"`` with ``n_workers=4`` evaluates that many points at
    once. torch uses ``threads`` CPU threads while it runs (None: torch's own setting), as on the command line.
    """
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
        bar = _Progress(budget, callback) if progress else None
        try:
            run(opt, objective, budget, bar or callback, batched)
        except BaseException as err:  # the objective failing, a value that is no number, Ctrl-C: keep what was paid for
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
    return result_of(opt, start)


class _Progress:
    """A tqdm bar of evaluations with the best value so far, moved after every round, then the user's callback."""

    def __init__(self, budget: int, callback: Callable | None):
        from tqdm import tqdm

        self.bar, self.callback = tqdm(total=budget, unit="eval", dynamic_ncols=True), callback

    def __call__(self, opt: Optimizer) -> None:
        self.bar.update(opt.n_evaluations - self.bar.n)
        y = opt.metrics()["best_y"]
        self.bar.set_postfix(best=f"{y:.6g}", refresh=False)
        if self.callback is not None:
            self.callback(opt)

    def close(self) -> None:
        """Leave the bar as it ended."""
        self.bar.close()


def result_of(opt: Optimizer, start: float) -> Result:
    """The Result of the evaluations ``opt`` holds (a run that stopped early holds fewer than its budget)."""
    best, best_y = opt.best
    X = opt.box.to_native(opt.pool.x)
    if isinstance(opt.box, Space):
        best_x = None if best is None else opt.box.accept(best)[0]
        return Result(best_x, best_y, X, opt.sign * opt.pool.y, opt.history(), list(opt.events),
                      time.perf_counter() - start, best, opt.box.present(X) if len(X) else [])
    return Result(best, best_y, X, opt.sign * opt.pool.y, opt.history(), list(opt.events),
                  time.perf_counter() - start)
