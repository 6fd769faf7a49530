"""The ask / tell optimizer and ``optimize`` on top of it.

``Optimizer`` is thin: it holds the config, the seed and the random generators, maps between the
user's box and the unit cube, and keeps the run record (``Ledger``) apart from what plans the
points (the ``Proposer`` the strategy names). ``ask`` hands out queued proposals, planning a round
when the queue is empty, so it can be called again before earlier points are told.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from . import checkpoint, resume
from .config import check_budget, check_seed, make_config
from .ledger import Ledger, Proposal
from .loop import run, torch_threads
from .proposers.base import RunSetup
from .proposers.registry import make_proposer
from .space import Box


@dataclass
class Result:
    """What ``optimize`` returns: the best point, every evaluation in order, and the lineage."""

    best_x: np.ndarray
    best_y: float
    X: np.ndarray
    y: np.ndarray
    history: pd.DataFrame
    lineage: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class Optimizer:
    """Ask / tell optimizer over a box. Maximizes by default; ``direction="minimize"`` flips it.

    ``config`` takes the keys of ``conf/`` (groups ``strategy``, ``ensemble``, ``search``,
    ``evolution``, ``evaluator`` and ``budget``); unknown keys are rejected. The same seed and config
    give the same proposals. With ``journal=PATH`` every told evaluation is appended to that file
    (JSON lines, fsynced) before ``tell`` returns, and ``load`` replays what a checkpoint missed.
    """

    def __init__(self, bounds: Sequence[Sequence[float]], config: Mapping[str, Any] | DictConfig | None = None,
                 seed: int | None = 0, direction: str = "maximize", journal: str | os.PathLike | None = None,
                 **overrides: Any):
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction={direction!r}: choose maximize or minimize")
        self.box = Box(bounds)
        self.cfg = make_config(config, **overrides)
        # seed=None: a fresh seed, kept in opt.seed so the run can be repeated
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else check_seed(seed)
        self.direction, self.sign = direction, 1.0 if direction == "maximize" else -1.0
        self.generator = torch.Generator().manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.ledger = Ledger(self.dim, journal)
        self.proposer = make_proposer(RunSetup(self.dim, self.cfg, self.seed, self.rng, self.generator))
        self.ledger.events += self.proposer.take_events()

    @property
    def dim(self) -> int:
        """The number of dimensions."""
        return self.box.dim

    @property
    def bounds(self) -> np.ndarray:
        """The box, [dim, 2]."""
        return self.box.bounds

    # ------------------------------------------------------------------ ask / tell
    def ask(self, n: int | None = None) -> np.ndarray:
        """The next ``n`` points to evaluate, [n, dim] inside the bounds (n=None: the rest of this round)."""
        if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"ask(n={n!r}): n must be a positive integer")
        proposals = self.ledger.take(None if n is None else int(n), self._plan)
        X = self.box.to_native(np.stack([p.x for p in proposals]))
        self.ledger.hand_out(X, proposals)
        return X

    def _plan(self) -> list[Proposal]:
        proposals = self.proposer.plan(self.ledger)
        self.ledger.events += self.proposer.take_events()
        for p in proposals:  # a last guard: ask never hands out a point outside the box or with NaN in it
            if not np.isfinite(p.x).all():
                p.x = np.clip(np.nan_to_num(p.x, nan=0.5), 0.0, 1.0)
        return proposals

    def tell(self, X: np.ndarray, y: np.ndarray | Sequence[float], reasons: Sequence[str] | None = None) -> None:
        """Report values for points returned by ``ask`` (in any order). NaN or inf marks a failed
        evaluation; ``reasons`` (one string per point) may say why it failed."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        y = np.atleast_1d(np.asarray(y, dtype=float)).reshape(-1)
        if X.shape[1] != self.dim:
            raise ValueError(f"tell: X has {X.shape[1]} columns but the bounds have {self.dim} dimensions")
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"tell: {X.shape[0]} points but {y.shape[0]} values")
        if reasons is not None and (isinstance(reasons, str) or len(reasons) != len(y)):
            raise ValueError(f"tell: {len(y)} values but reasons={reasons!r}; give one reason per point")
        proposals = self.ledger.match(X)
        values = np.where(np.isfinite(y), self.sign * y, np.nan)
        reasons = [""] * len(values) if reasons is None else [str(r) for r in reasons]
        start = self.ledger.record(X, np.stack([p.x for p in proposals]), self.sign * values, values,
                                   [p.provenance for p in proposals], reasons)
        self._observe(start, proposals)

    def _observe(self, start: int, proposals: list[Proposal] | None) -> None:
        withdraw = self.proposer.observe(self.ledger, start, proposals)
        if withdraw is not None:
            self.ledger.withdraw(withdraw)
        self.ledger.events += self.proposer.take_events()

    def drop_pending(self) -> None:
        """Forget the points asked and not told (asked beyond the budget; they will never be evaluated)."""
        self.ledger.drop_pending()

    def record_event(self, event: dict) -> None:
        """Add an event of the driver's (e.g. a worker that died) to the run's lineage."""
        self.ledger.events.append(event)

    # ------------------------------------------------------------------ what the run holds
    @property
    def best(self) -> tuple[np.ndarray, float] | tuple[None, None]:
        """(x, y) of the recommended evaluation, in the user's coordinates and sign: the best so far, or under
        noise (once a repeated evaluation showed it) the near-best point the model believes best."""
        i = self.proposer.recommend(self.ledger)
        if i is None:
            return None, None
        return self.box.to_native(self.pool.x[i]), float(self.sign * self.pool.y[i])

    @property
    def pool(self) -> Any:
        """Every evaluation so far (unit cube, maximized values)."""
        return self.ledger.pool

    @property
    def events(self) -> list[dict]:
        """The run's lineage events (births, forks, merges, restarts, workers that died), in order."""
        return self.ledger.events

    @property
    def n_evaluations(self) -> int:
        """Evaluations told so far, failed ones included."""
        return len(self.ledger)

    @property
    def seconds(self) -> float:
        """Wall time of the run so far, as the driver recorded it (kept across checkpoints)."""
        return self.ledger.seconds

    @seconds.setter
    def seconds(self, value: float) -> None:
        self.ledger.seconds = float(value)

    def history(self) -> pd.DataFrame:
        """One row per evaluation, in order: x (native), y (user sign), status and provenance."""
        return self.ledger.history(self.box.to_native, self.sign)

    def metrics(self) -> dict[str, float]:
        """Plain numbers describing the run now, for progress and tracking."""
        i = self.pool.best_index()
        return {"best_y": float("nan") if i is None else float(self.sign * self.pool.y[i]),
                "evaluations": float(len(self.pool)), **self.proposer.metrics(self.ledger),
                "failed_evaluations": float(len(self.pool) - self.pool.ok.sum())}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The whole state as plain values and tensors (the checkpoint format of ``checkpoint``)."""
        return {"config": OmegaConf.to_container(self.cfg), "seed": self.seed, "direction": self.direction,
                "bounds": self.bounds.tolist(),
                "generators": {"torch": self.generator.get_state(), "numpy": self.rng.bit_generator.state},
                "ledger": self.ledger.state_dict(),
                "proposer": {"name": self.proposer.name, "state": self.proposer.state_dict()}}

    def save(self, path: str | os.PathLike) -> None:
        """Write the whole state (pool, weights, optimizer moments, RNGs, queue) atomically to ``path``."""
        checkpoint.write(path, self.state_dict())

    @classmethod
    def load(cls, path: str | os.PathLike, journal: str | os.PathLike | None = None) -> "Optimizer":
        """An optimizer that continues exactly where the saved one stopped.

        Points that were asked but not told are asked again. If the optimizer kept a journal, the
        evaluations it holds beyond the checkpoint are told again (re-planning reproduces the
        proposals they answered), so nothing evaluated after the last checkpoint is lost.
        ``journal`` names the journal file when it is no longer where the saved optimizer kept it
        (a run folder that was moved).
        """
        return resume.load(cls, path, journal)

    @classmethod
    def rebuild(cls, bounds: Sequence[Sequence[float]], journal: str | os.PathLike,
                config: Mapping[str, Any] | DictConfig | None = None, seed: int | None = 0,
                direction: str = "maximize") -> "Optimizer":
        """The run a journal records, rebuilt without its checkpoint (lost or damaged): a fresh optimizer of the
        run's settings is told the journal's evaluations again in order; re-planning reproduces the proposals
        they answered, so a run that continues from here is the run that was interrupted."""
        return resume.rebuild(cls(bounds, config=config, seed=seed, direction=direction), journal)


def optimize(fn: Callable, bounds: Sequence[Sequence[float]], budget: int = 300, seed: int | None = 0,
             strategy: str = "nes", *, batched: bool = False, direction: str = "maximize",
             callback: Callable[[Optimizer], None] | None = None, evaluator: str | Mapping[str, Any] | None = None,
             n_workers: int | None = None, threads: int | None = 1, **overrides: Any) -> Result:
    """Maximize (or minimize) ``fn`` over ``bounds`` with exactly ``budget`` evaluations.

    ``fn`` maps one x [n] to a float (``batched=True``: [m, n] -> [m]). Keyword ``overrides`` set
    config keys: ``ensemble={"members": 20}``, ``search__mode="original"``. ``callback(opt)`` runs
    after every round of evaluations (progress bars, tracking). ``evaluator="processes"`` or
    ``"ray"`` with ``n_workers=4`` evaluates that many points at once. torch uses ``threads`` CPU threads
    while it runs (None: torch's own setting), as on the command line.
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
        try:
            run(opt, fn, budget, callback, batched)
        except BaseException as err:  # the objective failing, a value that is no number, Ctrl-C: keep what was paid for
            try:
                err.result = _result(opt, start)  # type: ignore[attr-defined]
            except Exception:  # never hide the error that stopped the run
                raise err from None
            err.add_note(f"nes_ensemble: the {opt.n_evaluations} evaluations made before this are in the "
                         "exception's .result (a Result, like optimize returns)")
            raise
    return _result(opt, start)


def _result(opt: Optimizer, start: float) -> Result:
    """The Result of the evaluations ``opt`` holds (a run that stopped early holds fewer than its budget)."""
    best_x, best_y = opt.best
    return Result(best_x, best_y, opt.box.to_native(opt.pool.x), opt.sign * opt.pool.y, opt.history(),
                  list(opt.events), time.perf_counter() - start)
