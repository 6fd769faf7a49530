"""The pool: every evaluation in order, with who proposed it and why.

Points are stored in the unit cube (the search's own coordinates). A failed evaluation keeps its
row with ``y = NaN`` and is never trained on. Optional per-member windows reproduce the original
Go benchmark's scheme, in which each network trains on its own slice of the stream and the slices
rotate so that every network eventually trains on every sample.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SOURCES = ("initial", "ascent", "gaussian", "cma", "quadratic", "original", "random", "kernel", "repeat")


@dataclass
class Provenance:
    """Why a point was proposed: its source, the member that proposed it, and the sibling it started from."""

    source: str
    member: int = -1
    sibling: int = -1
    round: int = 0
    predicted: float = float("nan")  # the proposing member's prediction (standardized), if any
    reference: float = float("nan")  # the value it had to beat to count as a success
    path: int = -1  # original scheme: which ascent path the point lies on


@dataclass
class SamplePool:
    """Append-only record of evaluations: x in the unit cube, y (maximized), provenance."""

    dim: int
    x: np.ndarray = field(init=False)
    y: np.ndarray = field(init=False)
    provenance: list[Provenance] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)  # why an evaluation failed ("" when it did not)

    def __post_init__(self) -> None:
        self.x = np.empty((0, self.dim))
        self.y = np.empty(0)

    def __len__(self) -> int:
        return len(self.y)

    def add(self, x: np.ndarray, y: np.ndarray, provenance: list[Provenance], reasons: list[str] | None = None) -> None:
        """Append evaluations (x [m, dim] in the unit cube, y [m] maximized, NaN for a failure) and why."""
        y = np.asarray(y, dtype=float).reshape(-1)
        self.x = np.concatenate([self.x, np.asarray(x, dtype=float).reshape(-1, self.dim)])
        self.y = np.concatenate([self.y, y])
        self.provenance.extend(provenance)
        reasons = list(reasons) if reasons is not None else [""] * len(y)
        self.reasons.extend(r or ("" if np.isfinite(v) else "non-finite value") for r, v in zip(reasons, y))

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of evaluations that succeeded (finite y)."""
        return np.isfinite(self.y)

    def best_index(self) -> int | None:
        """The index of the best successful evaluation (None while there is none)."""
        ok = np.flatnonzero(self.ok)
        return None if ok.size == 0 else int(ok[np.argmax(self.y[ok])])

    def column(self, name: str) -> np.ndarray:
        """One provenance field of every evaluation, as an array."""
        return np.array([getattr(p, name) for p in self.provenance])

    def window_weights(self, members: int, window: int, rotation: int) -> np.ndarray:
        """[members, n] 0/1 weights: member r sees block (r + rotation) mod members of the stream.

        The stream is cut into blocks of ``window`` samples assigned to members in turn; each member
        also sees the newest ``window`` samples so that fresh evaluations reach every network. As the
        rotation advances every member visits every block.
        """
        n = len(self)
        block = (np.arange(n) // window) % members
        owner = (np.arange(members)[:, None] + rotation) % members
        weights = (block[None, :] == owner).astype(float)
        weights[:, max(0, n - window):] = 1.0
        return weights


class Journal:
    """Append-only file of evaluations, one JSON line each, flushed and fsynced before ``write`` returns.

    A crash can at worst leave a torn last line. ``write`` cuts such a fragment off before it appends
    (so it never swallows the next row), and ``read`` skips any line that is not a whole row and
    keys rows by their evaluation index, so a damaged line costs that row only.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)

    def write(self, rows: list[dict[str, Any]]) -> None:
        """Append rows, one JSON line each, and return once they are on disk."""
        text = "".join(json.dumps(row, allow_nan=True) + "\n" for row in rows)
        self.cut_torn_tail()
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def cut_torn_tail(self) -> int:
        """Remove a last line that has no newline (a write cut short by a crash); returns the bytes removed."""
        try:
            with open(self.path, "rb+") as f:
                if f.seek(0, os.SEEK_END) == 0:
                    return 0
                f.seek(-1, os.SEEK_END)
                if f.read(1) == b"\n":
                    return 0
                f.seek(0)
                data = f.read()  # only after a crash: reading the whole journal once is cheap next to a run
                keep = data.rfind(b"\n") + 1
                f.truncate(keep)
                f.flush()
                os.fsync(f.fileno())
                return len(data) - keep
        except FileNotFoundError:
            return 0

    @staticmethod
    def read(path: str | os.PathLike) -> list[dict[str, Any]]:
        """The journal's rows in evaluation order, one per index (the first written wins); lines that are not a
        whole row (torn by a crash, edited by hand) are skipped."""
        if not os.path.exists(path):
            return []
        rows: dict[int, dict[str, Any]] = {}
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    row = json.loads(line)
                    index = int(row["evaluation"])
                    if not isinstance(row["unit"], list) or "y" not in row:
                        continue
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    continue
                rows.setdefault(index, row)
        return [rows[i] for i in sorted(rows)]

    @staticmethod
    def row(index: int, x_native: np.ndarray, x_unit: np.ndarray, y: float, reason: str, prov: Provenance) -> dict:
        """One evaluation as a journal row: its index, x (native and unit cube), y (user sign), status and why."""
        return {"evaluation": index, "x": [float(v) for v in x_native], "unit": [float(v) for v in x_unit],
                "y": float(y), "status": "ok" if np.isfinite(y) else "failed", "reason": reason, **asdict(prov)}
