"""Which evaluated point to recommend: under noise, the one a model believes best, not the luckiest draw.

With a noisy objective the best observed value is biased upwards: among many near-best points the
largest draw is often a mediocre point with lucky noise. Whether the objective is noisy is read from
repeated evaluations (the network proposers repeat the best design point once, ``search.repeat``):
a repeat that returned a different value is noise; a rugged deterministic objective looks just as
noisy to a model, so without such evidence the best observation is recommended. Once noise is seen,
a Gaussian-process member (``kernel_members``) fitted to the best evaluations estimates it and
smooths it out: among the evaluated points whose observed value lies within two noise deviations of
the best observation, the recommendation is the one with the highest posterior mean.
"""

from __future__ import annotations

import numpy as np
import torch

from ..members.kernel_members import MIN_NOISE, KernelMembers
from ..members.targets import train_targets

MAX_POINTS = 300  # the best evaluations the model is fitted to (a cubic cost; the band lies among them anyway)
MIN_POINTS = 8  # fewer evaluations than this: the best observation


def noise_seen(x: np.ndarray, y: np.ndarray) -> bool:
    """Whether two successful evaluations of the same point (x [n, d], y [n]) returned different values."""
    ok = np.isfinite(y)
    x, y = x[ok], y[ok]
    _, group, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    for g in np.flatnonzero(counts > 1):
        values = y[group == g]
        if np.ptp(values) > 1e-9 * (1.0 + np.abs(values).max()):
            return True
    return False


def recommend(x: np.ndarray, y: np.ndarray) -> int | None:
    """The index (into x [n, d] in the unit cube, y [n] maximized, NaN for failures) of the point to
    recommend, or None while no evaluation succeeded."""
    ok = np.flatnonzero(np.isfinite(y))
    if ok.size == 0:
        return None
    best = int(ok[np.argmax(y[ok])])
    if ok.size < MIN_POINTS or np.ptp(y[ok]) == 0:
        return best
    top = ok[np.argsort(-y[ok], kind="stable")[:MAX_POINTS]]
    z = train_targets(y[top], "standardize")
    member = KernelMembers(x.shape[1], 1)
    member.fit(x[top], z)
    noise_sd = float(np.sqrt(np.exp(member.log_noise.item()) + MIN_NOISE))
    band = top[z >= z.max() - 2.0 * noise_sd]
    if band.size == 1:
        return best
    with torch.no_grad():
        mean = member.predict(torch.as_tensor(x[band], dtype=torch.float64))[0][0].numpy()
    return int(band[np.argmax(mean)])
