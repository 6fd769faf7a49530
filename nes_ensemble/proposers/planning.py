"""One round of the surrogate search, as named steps over an explicit ``RoundInputs``.

1. ``start_points``: where ascents start (each member's best point, random points, the runner-up
   regions' best points), each with the value it must beat and the box it must stay in;
2. ``climb``: every member climbs its own surrogate from every start (one batched autograd run);
3. ``judge``: each end point's score (the population's mean prediction, optionally plus its spread),
   end points inside a basin already left scored out;
4. ``choose_ascents``: members in turn propose their best-scored end point that is not already taken;
5. ``refinements``: a polishing step on the best point (a quadratic fitted to its neighbours), the
   runner-up regions' own refinements, and samples of the CMA-ES over the rounds (or, with it off,
   Gaussian samples around the members' best points).

The steps read nothing but their arguments and draw only from the generator they are given, in
this order, so a round can be rebuilt and tested piece by piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from ..engine.ledger import Proposal
from ..engine.pool import Provenance, SamplePool
from ..members.feasibility import Feasibility
from ..members.population import Population
from .regions import outside_balls
from .search import ascend, distinct, gaussian, quadratic_step


@dataclass(frozen=True)
class RoundInputs:
    """What one round of the surrogate search reads, gathered once by the proposer."""

    search: DictConfig  # the search config
    pool: SamplePool
    bests: np.ndarray  # [k, d] each member's best point (unit cube)
    best_y: np.ndarray  # [k] its value
    runners: np.ndarray  # pool indices of the runner-up regions' best points
    climbers: np.ndarray  # [k] position in ``runners`` of the region each member climbs (-1: none)
    left_basins: np.ndarray  # [b, d] centres of basins left by restarts
    restart_radius: float  # their radius (unit cube)
    round: int
    n_ascent: int  # ascent proposals this round
    n_gaussian: int  # refinements this round
    radius: float  # half-width of the box every ascent stays in (0: the whole cube)
    steps: int  # ascent steps
    sigma: float  # Gaussian step
    steps_from: np.ndarray | None = None  # [n_gaussian, d] the CMA-ES's samples, when it gives the refinements
    feasibility: Feasibility | None = None  # the chance of success, where evaluations have failed

    @property
    def members(self) -> int:
        """The number of members, k."""
        return len(self.bests)

    @property
    def global_best(self) -> float:
        """The best value in the pool."""
        return self.pool.y[self.pool.best_index()]

    def away_from_left_basins(self, x: np.ndarray) -> np.ndarray:
        """Mask of points x [m, d] outside every basin left by a restart."""
        return outside_balls(x, self.left_basins, self.restart_radius)

    def allowed(self, x: np.ndarray) -> np.ndarray:
        """Mask of points x [m, d] worth proposing: outside the basins left, and not taken to fail."""
        keep = self.away_from_left_basins(x) if len(self.left_basins) else np.ones(len(x), bool)
        if self.feasibility is not None:
            keep &= self.feasibility.feasible(x)
        return keep


@dataclass(frozen=True)
class Starts:
    """A round's ascent starts in one array: the members' best points, then random points, then regions."""

    x: np.ndarray  # [S, d]
    reference: np.ndarray  # [S] the value a proposal from each start must beat to count as a success
    low: np.ndarray  # [S, d] the box each ascent stays in
    high: np.ndarray
    siblings: slice
    randoms: slice
    regions: slice

    def region(self, position: int) -> int:
        """The index of the start at runner-up region ``position``."""
        return self.regions.start + position


def start_points(inp: RoundInputs, rng: np.random.Generator) -> Starts:
    """The starts of every member's ascents, their reference values and boxes."""
    s, k, pool = inp.search, inp.members, inp.pool
    n_random = s.ascent.random_starts
    randoms = rng.random((n_random, pool.dim))
    x = np.concatenate([inp.bests, randoms, pool.x[inp.runners]])
    reference = np.concatenate([inp.best_y, np.full(n_random, inp.global_best), pool.y[inp.runners]])
    low, high = np.zeros_like(x), np.ones_like(x)
    if inp.radius > 0:  # a surrogate fitted to few points is trusted only near where it climbs from
        low, high = np.clip(x - inp.radius, 0.0, 1.0), np.clip(x + inp.radius, 0.0, 1.0)
    regions = slice(k + n_random, len(x))
    # a runner-up region is climbed locally: its ascents stay in a box of half-width regions.radius around
    # its best point, else they run off to the surrogate's maximum in the leading region
    low[regions] = np.clip(x[regions] - s.regions.radius, 0.0, 1.0)
    high[regions] = np.clip(x[regions] + s.regions.radius, 0.0, 1.0)
    return Starts(x, reference, low, high, slice(0, k), slice(k, k + n_random), regions)


def climb(pop: Population, starts: Starts, steps: int, lr: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member's ascent from every start: end points [k, S, d] and each member's own prediction [k, S]."""
    x = torch.tensor(starts.x, dtype=torch.float32).unsqueeze(0).expand(pop.size, -1, -1)
    return ascend(pop, x, steps, lr, torch.tensor(starts.low, dtype=torch.float32),
                  torch.tensor(starts.high, dtype=torch.float32))


def judge(inp: RoundInputs, pop: Population, ends: torch.Tensor, own: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """End points as numbers [k, S, d] and their scores [k, S]: by the whole population's mean prediction
    (``select=mean``; ``ucb`` adds ``beta`` times the members' disagreement) or the member's own (``own``);
    -inf inside a basin already left and where evaluations are taken to fail (``members/feasibility.py``)."""
    s, k = inp.search, pop.size
    score = own
    if s.select != "own" and k > 1:
        with torch.no_grad():
            votes = pop.forward(ends.reshape(1, -1, ends.shape[-1]).expand(k, -1, -1))
            score = votes.mean(0)
            if s.select == "ucb":  # members disagree where the pool says little: worth a look
                score = score + s.beta * votes.std(0)
            score = score.view(k, -1)
    ends_np, score_np = ends.numpy().astype(float), score.numpy()
    if len(inp.left_basins) or inp.feasibility is not None:
        barred = ~inp.allowed(ends_np.reshape(-1, ends_np.shape[-1])).reshape(score_np.shape)
        score_np = np.where(barred, -np.inf, score_np)
    return ends_np, score_np


def choose_ascents(inp: RoundInputs, starts: Starts, ends: np.ndarray, score: np.ndarray, taken: np.ndarray,
                   rng: np.random.Generator) -> tuple[list[Proposal], np.ndarray]:
    """``n_ascent`` members in turn each propose one end point of their own ascents: the best scored that is
    not already taken (a Gaussian step from it if all are). Returns the proposals and the points taken now."""
    s, k = inp.search, inp.members
    chosen: list[Proposal] = []
    for r in [(inp.round * inp.n_ascent + i) % k for i in range(inp.n_ascent)]:
        order = np.argsort(-score[r], kind="stable")
        if inp.climbers[r] >= 0:  # member r climbs from its runner-up region
            order = np.array([starts.region(inp.climbers[r])])
        elif s.assignment == "rotate":  # member r climbs from one sibling's point, a new sibling each round
            order = order[(order == (r + inp.round) % k) | (order >= starts.siblings.stop)]
        else:
            order = order[order < starts.regions.start]
        order = order[np.isfinite(score[r][order])]
        if not order.size:  # every end point lies in a basin already left or where evaluations fail: elsewhere
            x = rng.random((64, inp.pool.dim))
            x = x[np.argmax(inp.allowed(x))]
            chosen.append(Proposal(x, Provenance("random", member=r, round=inp.round)))
        else:
            free = distinct(ends[r][order], taken, s.min_distance)
            j = order[np.argmax(free)] if free.any() else order[0]
            x = ends[r][j] if free.any() else gaussian(ends[r][j][None], inp.sigma, rng)[0]
            chosen.append(Proposal(x, Provenance("ascent", member=r, sibling=int(j) if j < k else -1, round=inp.round,
                                                 predicted=float(score[r][j]), reference=float(starts.reference[j]))))
        taken = np.concatenate([taken, x[None]])
    return chosen, taken


def refinements(inp: RoundInputs, taken: np.ndarray, rng: np.random.Generator) -> list[Proposal]:
    """``n_gaussian`` refinements: first the best point's (a polishing step where a quadratic fits its
    neighbours, ``search.polish.enabled``, else a Gaussian sample), then each runner-up region's best point's the
    same way, and the rest Gaussian samples around random members' best points, or the CMA-ES's samples
    (``steps_from``) where it gives them."""
    s, pool, k = inp.search, inp.pool, inp.members
    ok = pool.ok
    chosen: list[Proposal] = []
    polished = None
    if s.polish.enabled and inp.n_gaussian:
        polished = quadratic_step(pool.x[ok], pool.y[ok], pool.x[pool.best_index()], s.polish.min_fit)
        if polished is not None and distinct(polished[None], taken, 1e-12)[0]:
            chosen.append(Proposal(polished, Provenance("quadratic", round=inp.round, reference=inp.global_best)))
        else:
            polished = None
    for i in range(inp.n_gaussian):
        if i == 0 and polished is not None:
            continue
        if 1 <= i <= len(inp.runners):  # a runner-up region gets its own refinement of its best point
            p = _region_refinement(inp, i - 1, taken, rng)
            chosen.append(p)
            taken = np.concatenate([taken, p.x[None]])
            continue
        if inp.steps_from is not None:
            chosen.append(Proposal(inp.steps_from[i], Provenance("cma", round=inp.round, reference=inp.global_best)))
            continue
        sib = int(np.argmax(inp.best_y)) if i == 0 else int(rng.integers(k))
        x = gaussian(inp.bests[sib][None], inp.sigma, rng)[0]
        chosen.append(Proposal(x, Provenance("gaussian", sibling=sib, round=inp.round, reference=inp.global_best)))
    return chosen


def _region_refinement(inp: RoundInputs, position: int, taken: np.ndarray, rng: np.random.Generator) -> Proposal:
    """A polishing step (or Gaussian sample) at runner-up region ``position``'s best point, owned by its first
    member."""
    pool, ok = inp.pool, inp.pool.ok
    j, owners = inp.runners[position], np.flatnonzero(inp.climbers == position)
    owner = int(owners[0]) if owners.size else -1
    polish = inp.search.polish
    x = quadratic_step(pool.x[ok], pool.y[ok], pool.x[j], polish.min_fit) if polish.enabled else None
    if x is not None and distinct(x[None], taken, 1e-12)[0]:
        return Proposal(x, Provenance("quadratic", member=owner, round=inp.round, reference=pool.y[j]))
    x = gaussian(pool.x[j][None], inp.sigma, rng)[0]
    return Proposal(x, Provenance("gaussian", member=owner, round=inp.round, reference=pool.y[j]))


def sibling_bests(pool: SamplePool, k: int, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                                      np.ndarray]:
    """Each of ``k`` members' best point: the best evaluation it proposed, else the pool's next-best point.

    ``keep`` masks the pool's rows that may serve (all of them when it keeps none). Returns x [k, d]
    (unit cube), y [k] and whether the point is the member's own find [k].
    """
    ok = np.flatnonzero(pool.ok)
    if keep is not None:
        fresh = ok[keep[ok]]
        ok = fresh if fresh.size else ok
    order = ok[np.argsort(-pool.y[ok], kind="stable")]
    member = pool.column("member")[order] if len(pool) else np.empty(0, dtype=int)
    xs, ys, own = np.empty((k, pool.dim)), np.empty(k), np.zeros(k, dtype=bool)
    fallback = 0
    for r in range(k):  # k is small and this runs once a round, outside the hot path
        mine = np.flatnonzero(member == r)
        if mine.size:
            i, own[r] = order[mine[0]], True
        else:
            i = order[min(fallback, len(order) - 1)]
            fallback += 1
        xs[r], ys[r] = pool.x[i], pool.y[i]
    return xs, ys, own
