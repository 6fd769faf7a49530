"""What the members learn from: targets made from the pool's values, and each member's sample weights.

Targets are ranks mapped through the normal quantile function (``rank``: a Gaussian copula, robust
to outliers and to the scale of F) or standardized values (``standardize``). ``score_targets``
puts new values on the same scale as the pool they join, to judge how well the members predicted
them before training on them. Sample weights are Poisson(1) draws per member and evaluation: each
member trains on its own bootstrap resample of the pool (bagging), so members disagree where the
pool says little.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

TRANSFORMS = ("rank", "standardize")


def warped(y: np.ndarray, power: float, offset: float = 0.01, top: float | None = None,
           span: float | None = None) -> np.ndarray:
    """Values warped by their gap to the best (``top``, by default the largest of ``y``), the gap in units of the
    values' range (``span``): ``-((gap + offset)^power - offset^power) / power`` (power 0: ``-log(1 + gap /
    offset)``). Power 1 is the identity up to scale; lower powers stretch the near-best and compress the far, for
    values that span orders of magnitude. Above ``top`` the warp goes on straight, with its slope there."""
    top, span = _top_span(y, top, span)
    gap = (top - y) / span
    near = np.maximum(gap, 0.0)
    if power < 1e-6:
        out, slope = -np.log1p(near / offset), -1.0 / offset
    else:
        out, slope = -((near + offset) ** power - offset ** power) / power, -offset ** (power - 1.0)
    return np.where(gap < 0, slope * gap, out)


def warp_scores(values: np.ndarray, reference: np.ndarray, power: float,
                offset: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """New ``values`` as targets of a member that warps by ``power`` and learnt from ``reference`` (warped and
    standardized by the reference's best, range, mean and spread), and the log of d target / d value at each: a
    density over targets plus it is a density over values, whatever the warp."""
    top, span = _top_span(reference, None, None)
    ref = warped(reference, power, offset, top, span)
    mean, spread = ref.mean(), ref.std() + 1e-12
    t = (warped(values, power, offset, top, span) - mean) / spread
    gap = np.maximum((top - values) / span, 0.0)
    log_slope = (power - 1.0) * np.log(gap + offset) - np.log(span) - np.log(spread)
    return t, log_slope


def _top_span(y: np.ndarray, top: float | None, span: float | None) -> tuple[float, float]:
    top = float(y.max()) if top is None else top
    if span is None:
        span = float(y.max() - y.min())
    return top, span if span > 0 else 1.0


def train_targets(y: np.ndarray, kind: str) -> np.ndarray:
    """Targets for the successful values ``y`` [n] of the pool."""
    if kind == "rank":
        ranks = np.argsort(np.argsort(y, kind="stable"), kind="stable")
        return norm.ppf((ranks + 0.5) / len(y))
    return standardized(y)


def standardized(y: np.ndarray) -> np.ndarray:
    """``y`` shifted to mean 0 and scaled to spread 1. Values near the float limit (1e308) overflow the
    sum of squares, so then ``y`` is first divided by its largest magnitude (the result is the same)."""
    return score_targets(y, y, "standardize")


def score_targets(values: np.ndarray, y: np.ndarray, kind: str) -> np.ndarray:
    """Targets of new ``values`` on the scale of the pool's successful values ``y`` (which they are not part of)."""
    if kind == "rank":
        quantile = (np.searchsorted(np.sort(y), values) + 0.5) / (len(y) + 1)
        return norm.ppf(np.clip(quantile, 1e-6, 1 - 1e-6))
    with np.errstate(over="ignore", invalid="ignore"):
        mean, spread = y.mean(), y.std()
        z = (values - mean) / (spread + 1e-12)
    if (np.isfinite(z).all() and np.isfinite(spread)) or len(y) == 0:
        return z
    scale = max(np.abs(y).max(), np.abs(values).max())
    y, values = y / scale, values / scale
    return (values - y.mean()) / (y.std() + 1e-12)


def poisson_weights(rng: np.random.Generator, shape: int | tuple[int, ...]) -> np.ndarray:
    """Bootstrap weights: independent Poisson(1) counts of the given shape, as floats."""
    return rng.poisson(1.0, size=shape).astype(float)
