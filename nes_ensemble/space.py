"""The search space: the user's box, and the map between it and the unit cube the search works in.

Every part of the search works in [0, 1]^n; only the optimizer's ``ask``, ``tell`` and results see
the user's coordinates.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def check_bounds(bounds: Sequence[Sequence[float]]) -> np.ndarray:
    """Bounds as a float array [n, 2], or a ValueError that says what is wrong with them."""
    try:
        if any(isinstance(v, (str, bytes, bool)) for v in np.asarray(bounds, dtype=object).ravel()):
            raise TypeError("not numbers")
        b = np.asarray(bounds, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"bounds={bounds!r}: expected a sequence of (low, high) pairs of numbers") from None
    if b.ndim != 2 or b.shape[1] != 2 or b.shape[0] == 0:
        raise ValueError(f"bounds has shape {b.shape}: expected one (low, high) pair per dimension, e.g. "
                         "[[0, 1], [0, 1]]")
    if not np.all(np.isfinite(b)):
        raise ValueError(f"bounds={b.tolist()}: every low and high must be a finite number")
    bad = np.flatnonzero(b[:, 0] >= b[:, 1])
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"bounds[{i}]=({b[i, 0]}, {b[i, 1]}): low must be smaller than high")
    return b


class Box:
    """A box of ``(low, high)`` bounds and the affine map between it and the unit cube."""

    def __init__(self, bounds: Sequence[Sequence[float]]):
        self.bounds = check_bounds(bounds)

    @property
    def dim(self) -> int:
        """The number of dimensions."""
        return self.bounds.shape[0]

    def to_native(self, u: np.ndarray) -> np.ndarray:
        """Unit-cube points [..., n] in the user's coordinates, never outside the bounds."""
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return np.clip(lo + np.asarray(u) * (hi - lo), lo, hi)
