"""The ask / tell optimizer (``optimize`` is built on it in ``synchronous.py``).

``Optimizer`` is thin: it holds the config, the seed and the random generators, maps between the
user's box and the unit cube, and keeps the run record (``Ledger``) apart from what plans the
points (the ``Proposer`` the strategy names). ``ask`` hands out queued proposals, planning a round
when the queue is empty, so it can be called again before earlier points are told.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from ..config import check_seed, make_config
from ..proposers.base import RunSetup
from ..proposers.registry import make_proposer
from ..space import Space, make_box
from . import checkpoint, resume
from .ledger import Ledger, Proposal
from .pool import Provenance


class Optimizer:
    """Ask / tell optimizer over a box, or a space of named parameters (then it asks and tells dicts).
    Maximizes by default; ``direction="minimize"`` flips it.

    ``config`` takes the keys of ``conf/`` (groups ``strategy``, ``ensemble``, ``search``,
    ``evolution``, ``evaluator`` and ``budget``); unknown keys are rejected. The same seed and config
    give the same proposals. With ``journal=PATH`` every told evaluation is appended to that file
    (JSON lines, fsynced) before ``tell`` returns, and ``load`` replays what a checkpoint missed.
    """

    def __init__(self, bounds: Sequence[Sequence[float]] | Mapping[str, Any],
                 config: Mapping[str, Any] | DictConfig | None = None, seed: int | None = 0,
                 direction: str = "maximize", journal: str | os.PathLike | None = None, **overrides: Any):
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction={direction!r}: choose maximize or minimize")
        self.box = make_box(bounds)
        self.cfg = make_config(config, **overrides)
        # seed=None: a fresh seed, kept in opt.seed so the run can be repeated
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else check_seed(seed)
        self.direction, self.sign = direction, 1.0 if direction == "maximize" else -1.0
        self.generator = torch.Generator().manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.ledger = Ledger(self.dim, journal)
        self.stopped = False
        if isinstance(self.box, Space):
            self.ledger.describe = self.box.present
        self.proposer = make_proposer(RunSetup(self.dim, self.cfg, self.seed, self.rng, self.generator,
                                               self.box if isinstance(self.box, Space) else None))
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
    def ask(self, n: int | None = None) -> Any:
        """The next ``n`` points to evaluate, [n, dim] inside the bounds, or n settings (dicts) of a space
        (n=None: the rest of this round)."""
        return self.box.present(self.ask_points(n))

    def ask_points(self, n: int | None = None) -> np.ndarray:
        """``ask`` as an array [n, dim] (for a space, the points as the search encodes them; what the loop uses)."""
        if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"ask(n={n!r}): n must be a positive integer")
        return self.ledger.take(None if n is None else int(n), self._plan, self.box.to_native)

    def _plan(self) -> list[Proposal]:
        proposals = self.proposer.plan(self.ledger)
        self.ledger.events += self.proposer.take_events()
        for p in proposals:  # a last guard: ask never hands out a point outside the box or with NaN in it
            if not np.isfinite(p.x).all():
                p.x = np.clip(np.nan_to_num(p.x, nan=0.5), 0.0, 1.0)
            p.x = self.box.snap(p.x)  # a space's integers rounded, categoricals decided
        if isinstance(self.box, Space):
            self._not_again(proposals)
        return proposals

    def _not_again(self, proposals: list[Proposal]) -> None:
        """Integers and categoricals make proposals land on points already evaluated (or planned): move such a
        proposal to a random setting not seen yet, if one is found in a few draws."""
        seen = {tuple(x) for x in self.ledger.taken()}
        for p in proposals:
            for _ in range(0 if p.provenance.source == "repeat" else 20):  # (a repeat is meant to repeat)
                if tuple(p.x) not in seen:
                    break
                p.x = self.box.snap(self.rng.random(self.dim))
            seen.add(tuple(p.x))

    def enqueue(self, setting: Any) -> None:
        """Evaluate ``setting`` (a point of the box, or a dict of a space) before anything planned: today's
        production setting, a colleague's best guess."""
        native = self.box.accept(setting)
        self._check_inside(native)
        for x in self.box.to_unit(native)[::-1]:
            self.ledger.queue.insert(0, Proposal(self.box.snap(x), Provenance("enqueued")))

    def _check_inside(self, X: np.ndarray) -> None:
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise ValueError(f"{X.tolist()}: expected points of {self.dim} coordinates")
        outside = ~np.all((X >= lo) & (X <= hi), axis=1)
        if outside.any():
            raise ValueError(f"the point {X[outside][0].tolist()} lies outside the bounds {self.bounds.tolist()}")

    def _foreign(self, x: np.ndarray) -> Proposal:
        """A told point that was not asked: an evaluation made elsewhere, accepted if inside the space."""
        self._check_inside(x[None])
        return Proposal(self.box.snap(self.box.to_unit(x)), Provenance("foreign"))

    def tell(self, X: np.ndarray, y: np.ndarray | Sequence[float], reasons: Sequence[str] | None = None) -> None:
        """Report values for points returned by ``ask`` (in any order; a point not asked is an evaluation
        made elsewhere, recorded as ``foreign``). NaN or inf marks a failed evaluation; ``reasons`` (one
        string per point) may say why it failed."""
        X = self.box.accept(X)
        try:
            y = np.atleast_1d(np.asarray(y, dtype=float)).reshape(-1)
        except (TypeError, ValueError):
            raise ValueError(f"tell: y={y!r}: expected one number per point (NaN marks a failed evaluation)") from None
        if X.shape[1] != self.dim:
            raise ValueError(f"tell: X has {X.shape[1]} columns but the bounds have {self.dim} dimensions")
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"tell: {X.shape[0]} points but {y.shape[0]} values")
        if reasons is not None and (isinstance(reasons, str) or len(reasons) != len(y)):
            raise ValueError(f"tell: {len(y)} values but reasons={reasons!r}; give one reason per point")
        proposals = self.ledger.match(X, self._foreign)
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

    def stop(self) -> None:
        """End the run that drives this optimizer (``optimize``, the command line) once the evaluations under way
        are told, e.g. from a callback; ``optimize`` then returns the Result of the evaluations made."""
        self.stopped = True

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
        return self.box.present(self.box.to_native(self.pool.x[i : i + 1]))[0], float(self.sign * self.pool.y[i])

    @property
    def pool(self) -> Any:
        """Every evaluation so far (unit cube, maximized values)."""
        return self.ledger.pool

    @property
    def events(self) -> list[dict]:
        """The run's lineage events (births, forks, merges, restarts, workers that died), in order."""
        return self.ledger.events

    @property
    def done(self) -> bool:
        """Whether the budget is spent (never, without a budget). ``ask`` still hands out points after it, for a
        run that goes on; a loop of its own stops on ``done``."""
        return bool(self.cfg.budget) and self.n_evaluations >= self.cfg.budget

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
        return self.ledger.history(lambda u: self.box.frame(self.box.to_native(u)), self.sign)

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
                "bounds": self.bounds.tolist(), **({"space": self.box.to_dict()} if isinstance(self.box, Space)
                                                   else {}),
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
        The journal is ``journal``, else the file of the saved journal's name beside the checkpoint (its run
        folder, wherever the folder is now); a path stored in the checkpoint is never followed elsewhere, and
        a checkpoint that names a class or function it should not hold is refused unloaded
        (``UnsafeCheckpointError``, a ``ValueError``).
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
