"""The pool: every evaluation in order, with who proposed it and why.

Points are stored in the unit cube (the search's own coordinates). A failed evaluation keeps its
row with ``y = NaN`` and is never trained on. Optional per-member windows reproduce the original
Go benchmark's scheme, in which each network trains on its own slice of the stream and the slices
rotate so that every network eventually trains on every sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SOURCES = ("initial", "ascent", "gaussian", "original", "random")


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

    def __post_init__(self) -> None:
        self.x = np.empty((0, self.dim))
        self.y = np.empty(0)

    def __len__(self) -> int:
        return len(self.y)

    def add(self, x: np.ndarray, y: np.ndarray, provenance: list[Provenance]) -> None:
        self.x = np.concatenate([self.x, np.asarray(x, dtype=float).reshape(-1, self.dim)])
        self.y = np.concatenate([self.y, np.asarray(y, dtype=float).reshape(-1)])
        self.provenance.extend(provenance)

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask of evaluations that succeeded (finite y)."""
        return np.isfinite(self.y)

    def best_index(self) -> int | None:
        ok = np.flatnonzero(self.ok)
        return None if ok.size == 0 else int(ok[np.argmax(self.y[ok])])

    def column(self, name: str) -> np.ndarray:
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
