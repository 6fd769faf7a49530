"""The default search: every member climbs its own surrogate, members in turn propose the end points.

Besides the best point, opt-in runner-up regions keep other basins climbing (``search.regions``),
and opt-in restarts leave a basin where the search has stagnated (``search.restarts``). The
refinements come from a CMA-ES over the rounds (``search.cma``, ``cma_steps``), told every proposal.
The round itself is planned by the steps of ``planning``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import numpy as np

from ..engine.ledger import Ledger, Proposal
from ..engine.pool import Provenance, SamplePool
from ..members.feasibility import Feasibility
from .base import RunSetup
from .cma_steps import CMASteps
from .network import NetworkProposer
from .planning import RoundInputs, choose_ascents, climb, judge, refinements, sibling_bests, start_points
from .regions import Restarts, RunnerUpRegions
from .search import Schedule, distinct, initial_design

CMA_TOLD = ("ascent", "quadratic", "gaussian", "cma")  # the proposals of a networks' round


class SurrogateProposer(NetworkProposer):
    """Ascents on the members' surrogates from their siblings' best points (``search.mode=surrogate``)."""

    def __init__(self, setup: RunSetup):
        super().__init__(setup)
        self.regions = RunnerUpRegions(self.cfg.search.regions, self.ensemble.size, self.cfg.budget or 0)
        self.restarts = Restarts(self.cfg.search.restarts, self.dim)
        self.cma: CMASteps | None = None  # created on the networks' first round (search.cma)

    def sibling_bests(self, pool: SamplePool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each member's best point outside the basins left by restarts."""
        return sibling_bests(pool, self.ensemble.size, self.restarts.outside(pool.x))

    def plan_round(self, ledger: Ledger) -> list[Proposal]:
        """Restart when the search has stagnated; else climb, choose and refine (see ``planning``)."""
        pool = ledger.pool
        bests, best_y, _ = self.sibling_bests(pool)
        self.restarts.observe_round(float(best_y.max()), pool)
        if self.restarts.due:
            design = self._restart(bests[int(np.argmax(best_y))], len(pool))
            if design:
                return design
            bests, best_y, _ = self.sibling_bests(pool)
        runners, opened = self.regions.locate(pool)
        self.regions.update(pool, runners, opened)
        inputs = self._inputs(pool, bests, best_y, runners, self.regions.climbers(opened))
        if self.cfg.search.cma.enabled and inputs.n_gaussian and not self.noisy(pool):
            # under noise a generation's ranks are mostly the noise's: Gaussian steps around the members' bests
            inputs = replace(inputs, steps_from=self._cma_samples(pool, inputs, ledger.taken()))
        starts = start_points(inputs, self.rng)
        ends, own = climb(self.ensemble.population, starts, inputs.steps, self.cfg.search.ascent.lr)
        ends, score = judge(inputs, self.ensemble.population, ends, own)
        chosen, taken = choose_ascents(inputs, starts, ends, score, ledger.taken(), self.rng)
        return chosen + refinements(inputs, taken, self.rng)

    def _inputs(self, pool: SamplePool, bests: np.ndarray, best_y: np.ndarray, runners: np.ndarray,
                climbers: np.ndarray) -> RoundInputs:
        s = self.cfg.search
        n_ascent, n_gaussian = self.round_size()
        short = n_ascent < self.configured_round()[0]  # a run whose rounds min_rounds shrinks
        return RoundInputs(search=s, pool=pool, bests=bests, best_y=best_y, runners=runners, climbers=climbers,
                           left_basins=self.restarts.basins, restart_radius=self.restarts.radius, round=self.round,
                           n_ascent=n_ascent, n_gaussian=n_gaussian,
                           radius=s.ascent.radius or (s.ascent.short_radius if short else 0.0),
                           steps=int(round(self.schedule.steps)), sigma=self.schedule.sigma,
                           feasibility=Feasibility.of(pool.x, pool.ok) if s.kernel.feasibility else None)

    def _cma_samples(self, pool: SamplePool, inputs: RoundInputs, taken: np.ndarray) -> np.ndarray:
        """The round's refinements from the CMA-ES (started at the best point on the networks' first round, a
        generation a round): its samples, and its mean as the last one unless a point within
        ``search.min_distance`` of it is already ``taken`` (a mean that barely moved once the step is small, or
        one not yet moved while a generation is still out with evaluations in parallel)."""
        if self.cma is None:
            self.cma = CMASteps(self.dim, inputs.n_ascent + inputs.n_gaussian, pool.x[pool.best_index()],
                                self.cfg.search.cma.sigma)
        x = self.cma.ask(inputs.n_gaussian, self.rng)
        mean = np.clip(self.cma.mean, 0.0, 1.0)
        if distinct(mean[None], taken, self.cfg.search.min_distance)[0]:
            x[-1] = mean
        return x

    def account(self, proposals: list[Proposal], values: np.ndarray) -> Callable[[Proposal], bool] | None:
        """Adapt the schedule, and tell the CMA-ES every proposal of the networks' rounds: its own samples, the
        ascents' end points and the polishing steps."""
        out = super().account(proposals, values)
        if self.cma is not None:
            told = [i for i, p in enumerate(proposals) if p.provenance.source in CMA_TOLD]
            if told:
                self.cma.tell(np.array([proposals[i].x for i in told]), np.asarray(values, dtype=float)[told])
        return out

    def metrics(self, ledger: Ledger) -> dict[str, float]:
        """The network proposer's metrics, and the CMA-ES's step size once it runs."""
        out = super().metrics(ledger)
        if self.cma is not None:
            out["cma_sigma"] = self.cma.sigma
        return out

    def _restart(self, x_best: np.ndarray, evaluations: int) -> list[Proposal]:
        """Leave the basin around x_best: later proposals avoid it, and a fresh space-filling batch re-explores."""
        s = self.cfg.search
        self.restarts.leave(x_best)
        self.schedule = Schedule.start(s)
        n = s.restarts.points or max(2, (s.n_init or self.auto_design()) // 2)
        design = initial_design(n, self.dim, s.init_design, self.seed + 7919 * len(self.restarts.basins))
        design = design[self.restarts.outside(design)]
        self.events.append({"event": "restart", "evaluations": evaluations, "basin": x_best.tolist()})
        return [Proposal(x, Provenance("random", round=self.round)) for x in design]

    def state_dict(self) -> dict[str, Any]:
        """The network proposer's state, with the regions' and restarts' counters."""
        return {**super().state_dict(), "regions": self.regions.state_dict(), "restarts": self.restarts.state_dict(),
                **({"cma": self.cma.state_dict()} if self.cma is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        super().load_state_dict(state)
        self.regions.load_state_dict(state["regions"])
        self.restarts.load_state_dict(state["restarts"])
        if "cma" in state:
            self.cma = CMASteps.from_state(self.dim, state["cma"])
