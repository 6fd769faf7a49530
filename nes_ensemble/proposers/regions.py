"""Where the search climbs besides the best point: runner-up regions, and basins left by restarts.

Both keep counters across rounds. Their queries (``locate``, ``due``, ``outside``) change nothing;
only ``update`` / ``observe_round`` / ``leave`` do, so asking twice never changes a run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ..engine.pool import SamplePool

REGION_SOURCES = ("ascent", "quadratic", "gaussian")  # what a region's own members propose inside it


class RunnerUpRegions:
    """Up to ``basins - 1`` regions apart from the best point, each climbed by its own share of the members.

    A region keeps climbing where its own members' evaluations went: its centre is the best of them
    while that lies farther than the basin radius from the pool's best point. A region without such a
    point is (re)opened greedily over the better half of the pool, best first: a point opens it when it
    lies farther than the basin radius from the best point and every other centre. Regions close for
    the rest of the run after ``until`` of a known budget, and one by one when their best point has not
    gained for ``patience`` rounds (``search.regions``).
    """

    def __init__(self, regions: DictConfig, members: int, budget: int):
        self.cfg, self.members, self.budget = regions, members, budget
        n = max(regions.basins - 1, 0)
        self.best = np.full(n, -np.inf)  # each region's best value so far
        self.stall = np.zeros(n, dtype=int)  # rounds since that last gained

    def member_regions(self) -> np.ndarray:
        """For each member, the region it belongs to (-1: none): the last ``share`` of them, in turn."""
        k = self.members
        region = np.full(k, -1)
        n = self.cfg.basins - 1
        if n > 0:
            m = min(k - 1, int(round(self.cfg.share * k)))
            for j in range(m):
                region[k - 1 - j] = j % n
        return region

    def open(self, evaluations: int) -> bool:
        """Whether any region may climb now (regions configured, and ``until`` not reached)."""
        s = self.cfg
        return s.basins > 1 and not (self.budget and s.until < 1 and evaluations >= s.until * self.budget)

    def locate(self, pool: SamplePool) -> tuple[np.ndarray, list[int]]:
        """Pool indices of the open regions' best points, and which region each is (a query: nothing changes)."""
        s = self.cfg
        if not self.open(len(pool)):
            return np.empty(0, dtype=int), []
        ok = np.flatnonzero(pool.ok)
        order = ok[np.argsort(-pool.y[ok], kind="stable")]
        radius = s.radius * np.sqrt(pool.dim)
        region = self.member_regions()
        member = pool.column("member")[order]
        ascent = np.array([pool.provenance[i].source in REGION_SOURCES for i in order], dtype=bool)
        centres, opened = [order[0]], []

        def apart(i: int) -> bool:
            return bool(np.linalg.norm(pool.x[centres] - pool.x[i], axis=1).min() > radius)

        for j in range(s.basins - 1):
            if s.patience and self.stall[j] >= s.patience:
                continue  # closed for good: it stopped gaining, its members climb with the rest
            own = order[ascent & np.isin(member, np.flatnonzero(region == j))]
            kept = own[0] if own.size and apart(own[0]) else None
            if kept is None:
                kept = next((i for i in order[: max(2, len(order) // 2)] if apart(i)), None)
            if kept is None:
                break
            centres.append(kept)
            opened.append(j)
        return np.array(centres[1:], dtype=int), opened

    def update(self, pool: SamplePool, centres: np.ndarray, opened: list[int]) -> None:
        """Count a round for the regions ``locate`` found: a region whose best point gained starts afresh."""
        for i, j in zip(centres, opened):
            gained = pool.y[i] > self.best[j]
            self.best[j] = max(self.best[j], pool.y[i])
            self.stall[j] = 0 if gained else self.stall[j] + 1

    def climbers(self, opened: list[int]) -> np.ndarray:
        """For each member, the position in ``opened`` of the region it climbs (-1: the usual starts)."""
        position = {j: p for p, j in enumerate(opened)}
        return np.array([position.get(int(j), -1) for j in self.member_regions()])

    def state_dict(self) -> dict[str, Any]:
        """The counters (for checkpoints)."""
        return {"best": torch.from_numpy(self.best.copy()), "stall": torch.from_numpy(self.stall.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.best, self.stall = state["best"].numpy().copy(), state["stall"].numpy().copy()


class Restarts:
    """Basins the search has left after stagnating: later proposals avoid a ball around each."""

    def __init__(self, restarts: DictConfig, dim: int):
        self.cfg, self.dim = restarts, dim
        self.basins = np.empty((0, dim))  # centres of the basins left (unit cube)
        self.stall = 0  # rounds without a gain of the best point outside them
        self.last_best = -np.inf

    @property
    def radius(self) -> float:
        """The radius of a basin left behind (unit cube)."""
        return self.cfg.radius * np.sqrt(self.dim)

    def outside(self, x: np.ndarray) -> np.ndarray:
        """Mask of points x [m, d] farther than the restart radius from every basin left behind."""
        return outside_balls(x, self.basins, self.radius)

    def observe_round(self, best: float, pool: SamplePool) -> None:
        """Count a round: a gain of the best point (beyond a thousandth of the values' spread) starts afresh."""
        y = pool.y[pool.ok]
        with np.errstate(all="ignore"):  # absurdly large values must not break the bookkeeping
            gained = best > self.last_best + 1e-3 * (y.std() + 1e-12)
        if gained:
            self.stall, self.last_best = 0, best
        else:
            self.stall += 1

    @property
    def due(self) -> bool:
        """Whether the search has stagnated for ``patience`` rounds (0: never)."""
        patience = self.cfg.patience
        return patience > 0 and self.stall >= patience

    def leave(self, x_best: np.ndarray) -> None:
        """Leave the basin around ``x_best`` for the rest of the run."""
        self.basins = np.concatenate([self.basins, x_best[None]])
        self.stall, self.last_best = 0, -np.inf

    def state_dict(self) -> dict[str, Any]:
        """The basins and counters (for checkpoints)."""
        return {"basins": torch.from_numpy(self.basins.copy()), "stall": self.stall, "last_best": self.last_best}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.basins = state["basins"].numpy().reshape(-1, self.dim).copy()
        self.stall, self.last_best = int(state["stall"]), float(state["last_best"])


def outside_balls(x: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """Mask of points x [m, d] farther than ``radius`` from every one of ``centres`` [b, d]."""
    if not len(centres):
        return np.ones(len(x), dtype=bool)
    return np.linalg.norm(x[:, None, :] - centres[None], axis=-1).min(1) > radius
