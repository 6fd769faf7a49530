"""What a worker process or a Ray worker runs: the objective on one point, its value checked.

Kept free of torch and of the rest of the package (numpy only), so that a fresh worker starts in a
fraction of a second instead of importing the whole optimizer.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np


def scalar(value: Any) -> float:
    """One float from what the objective returned (NaN for NaN / inf); a clear error for anything else."""
    if value is None:  # usually a missing return statement; float(None) would pass as a silent NaN
        raise ValueError("fn returned None: return one number per point (NaN or inf marks a failed evaluation)")
    try:
        v = float(np.asarray(value, dtype=float).reshape(()))
    except (TypeError, ValueError):
        raise ValueError(f"fn returned {value!r}: expected one number per point (or use batched=True)") from None
    return v if math.isfinite(v) else float("nan")


class Objective:
    """A problem as a worker calls it: one point in the user's box -> one value in the user's sign."""

    def __init__(self, problem: Any):
        self.problem = problem

    def __call__(self, x: np.ndarray) -> float:
        return float(self.problem.sign * self.problem.evaluate(np.asarray(x, dtype=float)[None])[0])


def call(fn: Callable, x: np.ndarray) -> float:
    """``fn(x)`` checked to be one number (what a Ray task runs)."""
    return scalar(fn(x))

