"""The original scheme of the 2017 write-up (``search.mode=original``): every ascent step is evaluated.

For each member r and each sibling s, r climbs its own surrogate from s's best point in fixed
steps of ``search.original.step_size`` along its gradient, each step a real evaluation; a path is
abandoned after ``search.original.patience`` steps without gain. Then ``search.original.gaussian``
samples around s's best point.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..engine.ledger import Ledger, Proposal
from ..engine.pool import Provenance
from .network import NetworkProposer
from .search import gaussian, original_paths


class OriginalProposer(NetworkProposer):
    """Paths of evaluated ascent steps from every sibling's best point, and Gaussian samples around them."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.paths: list[list[float]] = []  # per path: [best value on it, steps without gain]

    def plan_round(self, ledger: Ledger) -> list[Proposal]:
        """Every member's path from every sibling's best point, then Gaussian samples around that point."""
        s, k = self.cfg.search, self.ensemble.size
        bests, best_y, _ = self.sibling_bests(ledger.pool)
        starts = torch.tensor(bests, dtype=torch.float32).unsqueeze(0).expand(k, -1, -1)
        paths = original_paths(self.ensemble.population, starts, s.original).numpy().astype(float)  # [k, k, steps, d]
        out = []
        for r in range(k):
            for sib in range(k):
                pid = len(self.paths)
                self.paths.append([float(best_y[sib]), 0.0])
                for step in paths[r, sib]:
                    if np.isnan(step).any():
                        break
                    out.append(Proposal(step, Provenance("original", member=r, sibling=sib, round=self.round,
                                                         reference=float(best_y[sib]), path=pid)))
                for x in gaussian(np.repeat(bests[sib][None], s.original.gaussian, 0), s.original.sigma, self.rng):
                    out.append(Proposal(x, Provenance("gaussian", member=r, sibling=sib, round=self.round,
                                                      reference=float(best_y[sib]))))
        return out

    def account(self, proposals: list[Proposal], values: np.ndarray) -> Callable[[Proposal], bool] | None:
        """The schedule as for every network proposer; a path that stopped gaining is abandoned (its queued
        steps are withdrawn)."""
        super().account(proposals, values)
        abandoned = set()
        for p, v in zip(proposals, values):
            path = p.provenance.path
            if p.provenance.source != "original" or not 0 <= path < len(self.paths):
                continue
            state = self.paths[path]
            if np.isfinite(v) and v > state[0]:
                state[0], state[1] = float(v), 0.0
            else:
                state[1] += 1
                if state[1] >= self.cfg.search.original.patience:
                    abandoned.add(path)
        return (lambda q: q.provenance.path in abandoned) if abandoned else None

    def state_dict(self) -> dict[str, Any]:
        """The network proposer's state, with every path's best value and stall count."""
        return {**super().state_dict(), "paths": [list(p) for p in self.paths]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        super().load_state_dict(state)
        self.paths = [[float(a), float(b)] for a, b in state["paths"]]
