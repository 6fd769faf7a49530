"""The population manager's allocation: which kind of member proposes the next round.

Two kinds of member propose: the Gaussian-process members (one expected-improvement proposal a
round, ``proposers/kernel.py``) and the networks (a round of ascents and refinements). A fixed
allocation (every strategy but ``nes`` and ``nes_es``) is the schedule of 0.2: the Gaussian-process
members propose while the pool holds fewer than ``search.kernel.until`` successful evaluations, the
networks after. An evolving population (``nes``) shares the rounds by measured fitness instead:

* how often a kind's proposals improved on the best evaluation before them (its last ``window``
  proposals, with a Beta(1, 4) prior: a kind that has not proposed yet counts as improving once in
  five), and
* how well it predicted new evaluations before it learnt them (the rank correlation of its
  test-then-train predictions over the last ``window`` evaluations; 0 until it has five).

A kind's fitness is its improvement rate times ``(1 + max(0, correlation)) / 2``; the networks'
target share is their fitness over the sum, kept within ``[share_min, share_max]``, and, once they
have predicted five evaluations before learning them, they propose the next round whenever their
share of the proposals so far falls below it. The
Gaussian-process members still stop at ``search.kernel.until`` evaluations (their cost grows with
the cube of the pool); the networks propose every round after.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import spearmanr

from ..engine.pool import SamplePool

KINDS = ("gp", "networks")
KIND_OF_SOURCE = {"kernel": "gp", "polish": "gp", "ascent": "networks", "quadratic": "networks",
                  "gaussian": "networks", "cma": "networks"}
PRIOR = (1.0, 4.0)  # Beta prior of a kind's improvement rate: one improvement in five


class Allocation:
    """Decides which kind proposes each round; remembers each kind's test-then-train predictions."""

    def __init__(self, adaptive: bool, share_min: float = 0.1, share_max: float = 0.6, window: int = 20):
        self.adaptive, self.share_min, self.share_max, self.window = adaptive, share_min, share_max, window
        self.predictions: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}

    def choose(self, pool: SamplePool, gp_active: bool) -> str:
        """The kind that proposes the next round: ``gp`` or ``networks``."""
        if not gp_active:
            return "networks"
        if not self.adaptive or len(self.predictions["networks"]) < 5:  # the networks first show what they learnt
            return "gp"
        made = self.proposals(pool)
        total = made["gp"] + made["networks"]
        return "networks" if made["networks"] < self.target(pool) * (total + 1) else "gp"

    def target(self, pool: SamplePool) -> float:
        """The networks' target share of the proposals, from both kinds' fitness."""
        fit = self.fitness(pool)
        share = fit["networks"] / (fit["networks"] + fit["gp"])
        return float(np.clip(share, self.share_min, self.share_max))

    def fitness(self, pool: SamplePool) -> dict[str, float]:
        """Each kind's fitness: improvement rate times (1 + max(0, rank correlation)) / 2."""
        improved = self.improvements(pool)
        out = {}
        for kind in KINDS:
            recent = improved[kind][-self.window:]
            rate = (PRIOR[0] + sum(recent)) / (PRIOR[0] + PRIOR[1] + len(recent))
            out[kind] = rate * (1.0 + max(0.0, self.correlation(kind))) / 2.0
        return out

    def correlation(self, kind: str) -> float:
        """The rank correlation of the kind's last ``window`` test-then-train predictions with the values (0 with
        fewer than five, or when either side is constant)."""
        pairs = self.predictions[kind][-self.window:]
        if len(pairs) < 5:
            return 0.0
        pred, value = np.array(pairs).T
        if np.ptp(pred) == 0 or np.ptp(value) == 0:
            return 0.0
        rho = spearmanr(pred, value).statistic
        return float(rho) if np.isfinite(rho) else 0.0

    def observe(self, kind: str, predictions: np.ndarray, values: np.ndarray) -> None:
        """Record the kind's predictions of new successful evaluations, made before it learnt them."""
        self.predictions[kind] += [(float(p), float(v)) for p, v in zip(predictions, values)]
        del self.predictions[kind][:-self.window]

    @staticmethod
    def proposals(pool: SamplePool) -> dict[str, int]:
        """How many evaluations each kind proposed."""
        out = dict.fromkeys(KINDS, 0)
        for p in pool.provenance:
            kind = KIND_OF_SOURCE.get(p.source)
            if kind:
                out[kind] += 1
        return out

    @staticmethod
    def improvements(pool: SamplePool) -> dict[str, list[bool]]:
        """For each kind, in order, whether each of its successful proposals beat every evaluation before it."""
        out: dict[str, list[bool]] = {kind: [] for kind in KINDS}
        best = -np.inf
        for p, y in zip(pool.provenance, pool.y):
            if not np.isfinite(y):
                continue
            kind = KIND_OF_SOURCE.get(p.source)
            if kind:
                out[kind].append(bool(y > best))
            best = max(best, float(y))
        return out

    def metrics(self, pool: SamplePool) -> dict[str, float]:
        """The networks' target share and each kind's proposals and fitness, for progress and tracking."""
        made, fit = self.proposals(pool), self.fitness(pool)
        return {"networks_share": self.target(pool), "gp_proposals": float(made["gp"]),
                "network_proposals": float(made["networks"]), "gp_fitness": fit["gp"],
                "networks_fitness": fit["networks"]}

    def state_dict(self) -> dict[str, Any]:
        """The recorded predictions (the proposals and improvements are read from the pool)."""
        return {kind: [list(p) for p in pairs] for kind, pairs in self.predictions.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.predictions = {kind: [(float(a), float(b)) for a, b in state.get(kind, [])] for kind in KINDS}
