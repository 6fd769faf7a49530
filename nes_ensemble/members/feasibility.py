"""Where evaluations fail: the chance that a point's evaluation succeeds, learnt from the pool's outcomes.

The members learn from successful evaluations only, so a region where the system crashes or times out
looks to them like any region they know nothing of, and expected improvement, which seeks exactly that,
sent proposal after proposal there (Hartmann-6 with the half of the box where x0 + x1 > 1 failing: 91 of
100 evaluations failed on seed 0). This model reads only whether each evaluation succeeded: a Gaussian
process fitted to the outcomes (1 for success, 0 for failure; least-squares classification), whose
length scales learn the shape of the failing region, so a few failures mark the whole of it. Its mean,
clipped to [``FLOOR``, 1], is the chance of success; far from every evaluation it is the run's success
rate. Proposals weigh expected improvement by it (expected improvement under a constraint learnt from
the outcomes), and a point whose chance is below ``SURE``, or most of whose nearest evaluations failed,
is taken to fail and ranked below all others.
A run without failures is unchanged. The failed values themselves are never learnt.
"""

from __future__ import annotations

import numpy as np
import torch

from .kernel_members import KernelMembers

FLOOR = 1e-6  # the least chance of success
SURE = 0.1  # below this chance a point is taken to fail: it ranks below every other point
NEIGHBOURS = 3  # ... as is one whose nearest evaluations (in the model's length scales) failed, most of them


class Feasibility:
    """The chance of success at points of the unit cube, from the evaluated points x [n, d] and ok [n]."""

    def __init__(self, x: np.ndarray, ok: np.ndarray):
        labels = ok.astype(float)
        self.mean, self.spread = float(labels.mean()), float(labels.std())
        self.model = KernelMembers(x.shape[1], 1)  # fitted afresh each time: a resumed run decides alike
        self.model.fit(x, ((labels - self.mean) / self.spread)[None])
        self.x, self.failed = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(~ok)

    @staticmethod
    def of(x: np.ndarray, ok: np.ndarray) -> Feasibility | None:
        """The model of a pool's outcomes, or None when none failed or none succeeded (then there is nothing to
        tell apart, and proposals are not weighted)."""
        return Feasibility(x, ok) if 0 < int(ok.sum()) < len(ok) else None

    def chance(self, x: torch.Tensor) -> torch.Tensor:
        """The model's chance of success at x [m, d], unclipped (differentiable in x)."""
        return self.mean + self.spread * self.model.predict(x)[0][0]

    def log_chance(self, x: torch.Tensor) -> torch.Tensor:
        """Log of the chance of success at x [m, d] (differentiable in x)."""
        chance = self.chance(x)
        value = torch.log(chance.clamp(FLOOR, 1.0))
        # Expected improvement is largest where no evaluation has succeeded, so in a failing region it can exceed
        # that of the explored region by more than any floor's penalty (Branin failing where x0 > 0.6, its third
        # optimum there: log EI -1 against -14 at the best feasible point); a point the model is sure fails is
        # therefore ranked below every other, with a slope that leads a climb out
        return torch.where(self.taken_to_fail(x, chance), value - 1e3 + 1e2 * (chance - SURE).clamp(max=0.0), value)

    def taken_to_fail(self, x: torch.Tensor, chance: torch.Tensor) -> torch.Tensor:
        """Mask of the points x [m, d] whose ``chance`` is below ``SURE`` or that lie among failures."""
        return (chance < SURE) | self.among_failures(x)

    def among_failures(self, x: torch.Tensor) -> torch.Tensor:
        """Mask of the points x [m, d] most of whose ``NEIGHBOURS`` nearest evaluations failed, distances measured
        in the model's length scales. The smooth model cannot draw a sharp border: with the feasible optimum
        polished, proposals crept over it one failure after another while the chance there stayed above
        ``SURE`` (Branin failing where x0 > 0.55, 190 of 300 evaluations failed on one seed); an isolated failure
        (a transient crash) bars nothing."""
        scale = torch.exp(0.5 * self.model.log_inv_sq_scale[0].detach())
        distance = torch.cdist(x.detach().double() * scale, self.x * scale)
        k = min(NEIGHBOURS, len(self.x))
        nearest = distance.topk(k, largest=False).indices
        return self.failed[nearest].sum(1) * 2 > k

    def feasible(self, x: np.ndarray) -> np.ndarray:
        """Mask of the points x [m, d] not taken to fail."""
        x = torch.as_tensor(x, dtype=torch.float64)
        with torch.no_grad():
            return (~self.taken_to_fail(x, self.chance(x))).numpy()
