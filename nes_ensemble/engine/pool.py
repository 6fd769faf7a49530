"""The pool: every evaluation in order, with who proposed it and why.

Points are stored in the unit cube (the search's own coordinates). A failed evaluation keeps its
row with ``y = NaN`` and is never trained on. Optional per-member windows reproduce the original
Go benchmark's scheme, in which each network trains on its own slice of the stream and the slices
rotate so that every network eventually trains on every sample.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

SOURCES = ("initial", "ascent", "gaussian", "cma", "quadratic", "original", "random", "kernel", "polish", "repeat")


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
    def read(path: str | os.PathLike, dim: int | None = None) -> list[dict[str, Any]]:
        """The journal's rows in evaluation order, one per index (the first valid one written wins).

        A line that is not a valid row (torn by a crash, edited by hand: not JSON, a ``unit`` of another
        length than ``dim`` or outside the unit cube, no ``source``, a value that is not a number) is
        skipped with one warning for the file, so a damaged line costs that row only."""
        if not os.path.exists(path):
            return []
        rows: dict[int, dict[str, Any]] = {}
        bad: list[tuple[int, str]] = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                row, problem = _valid_row(line, dim)
                if row is None:
                    if problem:
                        bad.append((number, problem))
                    continue
                rows.setdefault(row["evaluation"], row)
        if bad:
            warnings.warn(f"{os.fspath(path)}: {len(bad)} line{'s' if len(bad) > 1 else ''} skipped, not a valid "
                          f"evaluation (line {bad[0][0]}: {bad[0][1]})", stacklevel=2)
        return [rows[i] for i in sorted(rows)]

    @staticmethod
    def row(index: int, x_native: np.ndarray, x_unit: np.ndarray, y: float, reason: str, prov: Provenance) -> dict:
        """One evaluation as a journal row: its index, x (native and unit cube), y (user sign), status and why."""
        return {"evaluation": index, "x": [float(v) for v in x_native], "unit": [float(v) for v in x_unit],
                "y": float(y), "status": "ok" if np.isfinite(y) else "failed", "reason": reason, **asdict(prov)}


_INTS = ("member", "sibling", "round", "path")
_FLOATS = ("predicted", "reference")


def is_number(v: Any) -> bool:
    """Whether ``v`` is an int or a float (not a bool), as a row read from a file must hold."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _valid_row(line: str, dim: int | None) -> tuple[dict[str, Any] | None, str]:
    """The row a journal line holds, with only the fields a row has and of their types, or (None, why not);
    a blank line or a torn last fragment is (None, "")."""
    if not line.strip():
        return None, ""
    if not line.endswith("\n"):
        return None, ""  # a torn last line: the write cut short, nothing to warn about
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        return None, "not JSON"
    if not isinstance(row, dict):
        return None, "not a JSON object"
    index, unit, y = row.get("evaluation"), row.get("unit"), row.get("y")
    if not is_number(index) or not math.isfinite(index) or index < 0 or int(index) != index:
        return None, "no evaluation number"
    if not isinstance(unit, list) or not unit or not all(is_number(v) and math.isfinite(v) for v in unit):
        return None, "'unit' is not a list of finite numbers"
    if dim is not None and len(unit) != dim:
        return None, f"'unit' has {len(unit)} coordinates, the run {dim}"
    if not all(-1e-9 <= v <= 1 + 1e-9 for v in unit):
        return None, "'unit' lies outside the unit cube"
    if not is_number(y):
        return None, "'y' is not a number"
    if not isinstance(row.get("source"), str):
        return None, "no 'source'"
    reason = row.get("reason", "")
    clean = {k: v for k, v in row.items() if k not in ("evaluation", "unit", "y", "reason", *_INTS, *_FLOATS)}
    clean.update(evaluation=int(index), unit=[min(max(float(v), 0.0), 1.0) for v in unit], y=float(y),
                 reason=reason if isinstance(reason, str) else str(reason))
    for k in _INTS:
        if k in row:
            if not is_number(row[k]) or not math.isfinite(row[k]) or int(row[k]) != row[k]:
                return None, f"{k!r} is not a whole number"
            clean[k] = int(row[k])
    for k in _FLOATS:
        if k in row:
            if not is_number(row[k]):
                return None, f"{k!r} is not a number"
            clean[k] = float(row[k])
    return clean, ""
