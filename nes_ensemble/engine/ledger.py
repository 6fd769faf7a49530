"""The run record: what was asked and what was told.

A ``Ledger`` holds the pool of evaluations, the proposals handed out and not yet told (*pending*),
the proposals planned and not yet handed out (*queue*), the journal on disk, and the run's events.
It knows nothing of how proposals are made; the optimizer fills the queue from its proposer. Told
points are matched to pending ones by value, so they may come back in any order and through a float
round trip (a file, another process).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch

from .pool import Journal, Provenance, SamplePool

_PROVENANCE = [f.name for f in fields(Provenance)]


@dataclass
class Proposal:
    """One point to evaluate (unit cube) and why it was proposed."""

    x: np.ndarray
    provenance: Provenance

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for checkpoints."""
        return {"x": [float(v) for v in self.x], **plain(asdict(self.provenance))}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Proposal":
        """The proposal ``to_dict`` described."""
        return cls(np.array(d["x"], dtype=float), Ledger.provenance_of(d))


class Ledger:
    """Pool, pending points, queue, journal and events of one run, in the unit cube."""

    def __init__(self, dim: int, journal: str | os.PathLike | None = None):
        self.dim = dim
        self.pool = SamplePool(dim)
        self.pending: list[tuple[np.ndarray, Proposal]] = []  # (x as ask returned it, proposal)
        self.queue: list[Proposal] = []
        self.events: list[dict] = []
        self.journal = None if journal is None else os.path.abspath(os.fspath(journal))
        self.describe: Callable[[np.ndarray], list[dict]] | None = None  # points -> settings, for a named space
        self.seconds = 0.0  # wall time of the run so far, kept across checkpoints

    def __len__(self) -> int:
        return len(self.pool)

    # ------------------------------------------------------------------ asking
    def take(self, n: int | None, plan: Callable[[], list[Proposal]], native: Callable[[np.ndarray], np.ndarray]
             ) -> np.ndarray:
        """The next ``n`` queued proposals (None: the rest of the round) handed out as points ``native`` makes of
        them, planning when the queue runs dry. A part is pending before the next round is planned, so that the
        round knows those points are taken."""
        parts, left = [], n
        while left is None or left > 0:
            if not self.queue:
                self.queue.extend(plan())
            k = len(self.queue) if left is None else min(left, len(self.queue))
            proposals, self.queue = self.queue[:k], self.queue[k:]
            parts.append(native(np.stack([p.x for p in proposals])))
            self.hand_out(parts[-1], proposals)
            left = 0 if left is None else left - k
        return np.concatenate(parts)

    def hand_out(self, X: np.ndarray, proposals: list[Proposal]) -> None:
        """Remember the points ``X`` (as the user got them) as pending answers to ``proposals``."""
        self.pending.extend((x.copy(), p) for x, p in zip(X, proposals))

    def taken(self) -> np.ndarray:
        """Every point evaluated, pending or queued [m, dim]: where a new proposal should not land."""
        parts = [self.pool.x]
        if self.pending:
            parts.append(np.stack([p.x for _, p in self.pending]))
        if self.queue:
            parts.append(np.stack([p.x for p in self.queue]))
        return np.concatenate(parts)

    def pending_sources(self) -> set[str]:
        """The sources of the proposals handed out and not yet told."""
        return {p.provenance.source for _, p in self.pending}

    def withdraw(self, drop: Callable[[Proposal], bool]) -> None:
        """Remove queued proposals the proposer no longer wants."""
        self.queue = [q for q in self.queue if not drop(q)]

    def drop_pending(self) -> None:
        """Forget points handed out that will never be told (asked beyond the budget, or a stopped run)."""
        self.pending.clear()

    def requeue_pending(self) -> None:
        """Put pending proposals back at the front of the queue (after a restart nothing is in flight)."""
        self.queue = [p for _, p in self.pending] + self.queue
        self.pending = []

    # ------------------------------------------------------------------ telling
    def match(self, X: np.ndarray, foreign: Callable[[np.ndarray], Proposal]) -> list[Proposal]:
        """The pending proposals the rows of ``X`` answer, removed from pending; a row that answers none was
        evaluated elsewhere and gets the proposal ``foreign(row)`` makes (which may refuse it)."""
        taken: set[int] = set()
        found = []
        for row in X:
            i = self._find(row, taken)
            if i is not None:
                taken.add(i)
            found.append(i)
        proposals = [self.pending[i][1] if i is not None else foreign(row) for i, row in zip(found, X)]
        self.pending = [p for i, p in enumerate(self.pending) if i not in taken]
        return proposals

    def _find(self, row: np.ndarray, taken: set[int]) -> int | None:
        for i, (x, _) in enumerate(self.pending):
            if i not in taken and np.array_equal(x, row):
                return i
        for i, (x, _) in enumerate(self.pending):  # tolerate a float round trip (e.g. through a file)
            if i not in taken and np.allclose(x, row, rtol=1e-9, atol=1e-12):
                return i
        return None

    def record(self, X: np.ndarray, units: np.ndarray, y_user: np.ndarray, values: np.ndarray,
               provenance: list[Provenance], reasons: list[str]) -> int:
        """Append evaluations: to the journal on disk first (``X`` and ``y_user`` as the user sees them), then to
        the pool (unit cube, maximized ``values``). Returns the pool index of the first new row."""
        start = len(self.pool)
        if self.journal is not None:
            rows = [Journal.row(start + i, X[i], units[i], float(y_user[i]), reasons[i], provenance[i])
                    for i in range(len(values))]
            if self.describe is not None:  # a named space: each row also says the setting, by name
                for row, setting in zip(rows, self.describe(X)):
                    row["params"] = setting
            Journal(self.journal).write(rows)
        self.pool.add(units, values, provenance, reasons)
        return start

    def history(self, frame: Callable[[np.ndarray], pd.DataFrame], sign: float) -> pd.DataFrame:
        """One row per evaluation, in order: x (native, the columns ``frame`` makes of the unit points), y (user
        sign), status and provenance."""
        pool = self.pool
        df = frame(pool.x).reset_index(drop=True)
        df.insert(0, "evaluation", np.arange(len(pool)))
        df["y"] = sign * pool.y
        df["status"] = np.where(pool.ok, "ok", "failed")
        df["reason"] = pool.reasons if len(pool) else []
        for name in ("source", "member", "sibling", "round"):
            df[name] = pool.column(name) if len(pool) else []
        ok_y = np.where(pool.ok, pool.y, -np.inf)
        df["best_y"] = sign * np.maximum.accumulate(ok_y) if len(pool) else []
        return df

    # ------------------------------------------------------------------ replay
    def replay(self, rows: list[dict], ask_one: Callable[[], np.ndarray],
               tell: Callable[[np.ndarray, list[float], list[str]], None],
               adopt: Callable[[list[dict]], None]) -> int:
        """Tell recorded rows (journal rows, or a checkpoint's pool) again without evaluating anything.

        Asks one point at a time (re-planning reproduces the proposals the rows answered) and tells each
        asked point a row answers; asked points no row answers go back to the queue. Rows no re-planned
        proposal answers (a run whose evaluations were in flight planned with fewer results than a replay
        has) are adopted as they are, in their order. Returns the number of rows adopted.
        """
        if not rows:
            return 0
        journal, self.journal = self.journal, None  # these rows are on disk already
        left: dict[tuple, list[int]] = {}  # unit x -> the rows at it, in order (a repeat shares its point's x)
        for i, r in enumerate(rows):
            left.setdefault(tuple(r["unit"]), []).append(i)
        try:
            while left and (self.queue or not self.pending):  # a plan made now could not be the one they answered
                asked = ask_one()
                key = tuple(float(v) for v in self.pending[-1][1].x)
                if key in left:
                    row = rows[left[key].pop(0)]
                    if not left[key]:
                        del left[key]
                    tell(asked[None], [row["y"]], [row["reason"]])
            rest = sorted(i for indices in left.values() for i in indices)
            if rest:
                adopt([rows[i] for i in rest])
        finally:
            self.requeue_pending()
            self.journal = journal
        return len(rest)

    @staticmethod
    def rows_of(state: dict[str, Any], sign: float) -> list[dict]:
        """The pool of a saved ledger (``state_dict``) as replayable rows (``y`` in the user's sign)."""
        x, y = state["x"].numpy(), state["y"].numpy()
        return [{"unit": [float(v) for v in x[i]], "y": float(sign * y[i]), "reason": state["reasons"][i]}
                for i in range(len(y))]

    @staticmethod
    def provenance_of(row: dict[str, Any]) -> Provenance:
        """The provenance a journal row (or a saved proposal) carries."""
        return Provenance(**{k: row[k] for k in _PROVENANCE if k in row})

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The run record as plain values and tensors."""
        pool = self.pool
        return {"x": torch.from_numpy(pool.x.copy()), "y": torch.from_numpy(pool.y.copy()),
                "provenance": [plain(asdict(p)) for p in pool.provenance], "reasons": list(pool.reasons),
                "pending": [{"asked": [float(v) for v in x], **p.to_dict()} for x, p in self.pending],
                "queue": [p.to_dict() for p in self.queue], "events": plain(self.events), "journal": self.journal,
                "seconds": float(self.seconds)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.pool = SamplePool(self.dim)
        self.pool.x = state["x"].numpy().reshape(-1, self.dim).copy()
        self.pool.y = state["y"].numpy().copy()
        self.pool.provenance = [Ledger.provenance_of(p) for p in state["provenance"]]
        self.pool.reasons = list(state["reasons"])
        self.pending = [(np.array(p["asked"], dtype=float), Proposal.from_dict(p)) for p in state["pending"]]
        self.queue = [Proposal.from_dict(p) for p in state["queue"]]
        self.events = list(state["events"])
        self.journal = state["journal"]
        self.seconds = float(state["seconds"])


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists (checkpoints load safely)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
