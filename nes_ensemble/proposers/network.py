"""What every network proposer shares: the ensemble, the initial design, the schedule, round sizes.

A round of a network proposer: while the initial design is out, a free worker gets the design's
next point; with fewer than two successful evaluations, a random point; otherwise the ensemble
trains on what the pool holds and the subclass plans the round.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Callable

import numpy as np

from ..engine.ledger import Ledger, Proposal
from ..engine.pool import Provenance, SamplePool
from ..engine.recommendation import noise_seen, recommend
from ..members.allocation import Allocation
from ..members.ensemble import Ensemble
from ..members.kernel_evolution import KernelEvolution
from .base import Proposer, RunSetup
from .kernel import KernelSearch
from .planning import sibling_bests
from .search import Schedule, initial_design

NETWORKS_LEARN_EVERY = 10  # while the Gaussian-process members propose, the networks train on every tenth evaluation


class NetworkProposer(Proposer):
    """A proposer driven by the network population (strategies nes, sgd, es, nes_es)."""

    def __init__(self, setup: RunSetup):
        super().__init__(setup)
        self.ensemble = Ensemble(setup.dim, setup.cfg, setup.seed, setup.rng, setup.generator)
        self.schedule = Schedule.start(self.cfg.search)
        self.round = 0
        self.ascent_tally = [0, 0]  # successes, trials since the last schedule update
        ker, surrogate = self.cfg.search.kernel, self.cfg.search.mode == "surrogate"  # not the original scheme
        self.kernel = KernelSearch(self.dim, ker, self.seed, self.rng, setup.space, self._kernel_evolution()) \
            if ker.until > 0 and surrogate else None
        self.n_repeats = self.cfg.search.repeat if surrogate else 0
        self.n_design = self.design_size  # initial-design points handed out (more while the design is out)
        self.designed = False  # whether the initial design has been planned
        self.repeats = 0  # repeated evaluations of the best point handed out
        self._recommended: tuple[int, int | None] = (-1, None)  # (pool size, index) of the last recommendation
        self._noisy = (-1, False)  # (pool size, whether noise_seen) of the last look
        evo = self.cfg.evolution
        adaptive = self.kernel is not None and self.ensemble.evolves and evo.share_max > 0
        self.allocation = Allocation(adaptive, evo.share_min, evo.share_max, evo.share_window)
        self.events = self.ensemble.births()
        if self.kernel is not None and self.kernel.evolution is not None:
            self.events += self.kernel.evolution.births(self.kernel.members, 0)

    def _kernel_evolution(self) -> KernelEvolution | None:
        """The Gaussian-process members' generations where the population evolves (its ids follow the networks')."""
        if not self.ensemble.evolves or self.cfg.evolution.kernel.every < 0:
            return None
        evolution = self.ensemble.evolution

        def new_ids(n: int) -> list[int]:
            first = evolution.next_id
            evolution.next_id += n
            return list(range(first, first + n))

        return KernelEvolution(self.cfg.evolution.kernel, self.seed, self.cfg.budget or 0, new_ids)

    def auto_design(self) -> int:
        """The initial design's size when ``search.n_init`` is 0: before the kernel phase max(10, dim + 1) (or
        ``search.kernel.design``), for the networks 6 per dimension, at least 20; at most a quarter of a known
        budget."""
        ker = self.cfg.search.kernel
        n = (ker.design or max(10, self.dim + 1)) if self.kernel is not None else max(20, 6 * self.dim)
        budget = self.cfg.budget
        return min(n, max(2, budget // 4)) if budget else n

    @property
    def design_size(self) -> int:
        """The configured initial design: ``search.n_init``, or ``auto_design()`` when that is 0."""
        return self.cfg.search.n_init or self.auto_design()

    @staticmethod
    def _designs_told(ledger: Ledger) -> int:
        return int(sum(p.source == "initial" for p in ledger.pool.provenance))

    def plan(self, ledger: Ledger) -> list[Proposal]:
        """The initial design first; then rounds planned by the trained networks."""
        s = self.cfg.search
        if not self.designed:
            self.designed = True
            if int(ledger.pool.ok.sum()) >= self.design_size:  # told enough evaluations made elsewhere (a study
                self.n_design = 0  # resumed, a warm start): they are the design, and no repeat follows either
                return self.plan(ledger)
            return [Proposal(x, Provenance("initial")) for x in initial_design(self.n_design, self.dim,
                                                                                s.init_design, self.seed)]
        if "initial" in ledger.pending_sources() and self._designs_told(ledger) < self.design_size:
            # asynchronous asks while the initial design is still out: a model of part of it would steer a
            # whole round, so the free worker gets the design's next point instead (until the configured
            # design is told in full: the design grows by at most the evaluations in flight)
            self.n_design += 1
            x = initial_design(self.n_design, self.dim, s.init_design, self.seed)[-1]
            return [Proposal(x, Provenance("initial"))]
        if ledger.pool.ok.sum() < 2:  # nothing to learn from yet (every ask so far still pending): at random
            return [Proposal(self.rng.random(self.dim), Provenance("random", round=self.round))]
        if self.repeats < self.n_repeats and self._designs_told(ledger) >= self.design_size:
            # the best point once more: a different value tells noise from a rugged landscape (recommendation)
            self.repeats += 1
            best = ledger.pool.best_index()
            return [Proposal(ledger.pool.x[best].copy(), Provenance("repeat", round=self.round))]
        if self.kernel is not None and self.allocation.choose(ledger.pool, self.kernel.active(ledger)) == "gp":
            if self.allocation.adaptive:  # the networks learn as they go, to be judged and ready for their rounds
                self.events += self.ensemble.train(ledger.pool, every=NETWORKS_LEARN_EVERY)
            self.round += 1
            out = self.kernel.plan(ledger, self.cfg.search.kernel.per_round, self.round, self.cfg.budget or 0)
            self.events += self.kernel.events
            self.kernel.events.clear()
            return out
        self.events += self.ensemble.train(ledger.pool)
        self.round += 1
        return self.plan_round(ledger)

    @abstractmethod
    def plan_round(self, ledger: Ledger) -> list[Proposal]:
        """A round planned by the trained networks."""

    def configured_round(self) -> tuple[int, int]:
        """Ascent and Gaussian proposals per round as configured (at most one ascent proposal per member)."""
        k = self.ensemble.size
        return min(k, self.cfg.search.proposals_per_round or k), self.cfg.search.gaussian_per_round

    def round_size(self) -> tuple[int, int]:
        """Ascent and Gaussian proposals per round: the configured sizes, made smaller when the budget
        leaves fewer than ``search.min_rounds`` rounds of them after the initial design and the kernel phase
        (a short run learns more from several small rounds than from a few large ones)."""
        s = self.cfg.search
        n_prop, n_gauss = self.configured_round()
        if self.allocation.adaptive:  # the networks share the budget with the Gaussian-process members
            left = ((self.cfg.budget or 0) - self.n_design) // 2
        else:  # the kernel phase, if any, comes first
            until = self.cfg.search.kernel.until if self.kernel is not None else 0
            left = (self.cfg.budget or 0) - max(self.n_design, until)
        if self.cfg.budget and s.min_rounds and left < s.min_rounds * (n_prop + n_gauss):
            f = max(left, 0) / (s.min_rounds * (n_prop + n_gauss))
            n_prop, n_gauss = max(1, round(n_prop * f)), min(n_gauss, max(1, round(n_gauss * f)))
        return n_prop, n_gauss

    def sibling_bests(self, pool: SamplePool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each member's best point: the best evaluation it proposed, else the pool's next-best point."""
        return sibling_bests(pool, self.ensemble.size)

    # ------------------------------------------------------------------ results
    def observe(self, ledger: Ledger, start: int,
                proposals: list[Proposal] | None) -> Callable[[Proposal], bool] | None:
        """Score the members on the new evaluations and weigh them for training; then, for proposals of this
        run, count successes for the schedule."""
        pool = ledger.pool
        if self.allocation.adaptive:  # both kinds' test-then-train predictions, for the allocation
            ok = np.isfinite(pool.y[start:])
            x, values = pool.x[start:][ok], pool.y[start:][ok]
            if len(values) and self.ensemble.trained_on > 0:
                self.allocation.observe("networks", self.ensemble.predict(x), values)
            if len(values) and self.kernel is not None and self.kernel.fitted:
                self.allocation.observe("gp", self.kernel.predict(x), values)
        self.ensemble.observe(pool, start)
        if proposals is None:
            return None
        return self.account(proposals, ledger.pool.y[start:])

    def account(self, proposals: list[Proposal], values: np.ndarray) -> Callable[[Proposal], bool] | None:
        """Adapt the schedule: the Gaussian step after every result, the ascent steps after a round's worth."""
        s = self.cfg.search
        sig_succ = sig_trials = 0
        for p, v in zip(proposals, values):
            prov = p.provenance
            success = bool(np.isfinite(v) and v > prov.reference)
            if prov.source == "ascent":
                self.ascent_tally[0] += success
                self.ascent_tally[1] += 1
            elif prov.source == "gaussian":
                sig_succ += success
                sig_trials += 1
        self.schedule.update_sigma(sig_succ, sig_trials, s)
        if self.ascent_tally[1] >= self.round_size()[0]:
            self.schedule.update_ascent(*self.ascent_tally, s)
            self.ascent_tally = [0, 0]
        return None

    def recommend(self, ledger: Ledger) -> int | None:
        """The best observation, or, once a repeated evaluation has shown noise, the near-best point with the
        highest posterior mean (``recommendation``); computed once per pool size."""
        pool = ledger.pool
        if self._recommended[0] != len(pool):
            self._recommended = (len(pool), recommend(pool.x, pool.y) if self.noisy(pool) else pool.best_index())
        return self._recommended[1]

    def noisy(self, pool: SamplePool) -> bool:
        """Whether a repeated point has returned another value (``noise_seen``): looked at once per pool size,
        and for good once seen (the pool only grows)."""
        if self._noisy[0] != len(pool) and not self._noisy[1]:
            self._noisy = (len(pool), noise_seen(pool.x, pool.y))
        return self._noisy[1]

    def metrics(self, ledger: Ledger) -> dict[str, float]:
        """The networks' error and disagreement, the schedule, the population and the round."""
        return {"surrogate_error": self.ensemble.surrogate_error, "ascent_steps": self.schedule.steps,
                "sigma": self.schedule.sigma, "success_rate": self.schedule.success_rate,
                "members": float(self.ensemble.size), "diversity": self.ensemble.diversity(ledger.pool),
                "generation": float(self.ensemble.evolution.generation), "round": float(self.round),
                **(self.allocation.metrics(ledger.pool) if self.allocation.adaptive else {}),
                **({"gp_generation": float(self.kernel.evolution.generation)}
                   if self.kernel is not None and self.kernel.evolution is not None else {})}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The ensemble, the schedule and the counters."""
        sch = self.schedule
        return {"ensemble": self.ensemble.state_dict(), "schedule": [sch.steps, sch.sigma, sch.success_rate],
                "round": self.round, "ascent_tally": list(self.ascent_tally), "n_design": self.n_design,
                "designed": self.designed, "repeats": self.repeats, "allocation": self.allocation.state_dict(),
                **({"kernel": self.kernel.state_dict()} if self.kernel else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.ensemble.load_state_dict(state["ensemble"])
        self.schedule = Schedule(*(float(v) for v in state["schedule"]))
        self.round, self.n_design = int(state["round"]), int(state["n_design"])
        self.ascent_tally = [int(v) for v in state["ascent_tally"]]
        if len(self.ascent_tally) != 2:
            raise ValueError(f"ascent_tally holds {len(self.ascent_tally)} counts, not 2")
        self.designed = bool(state["designed"])
        self.repeats = int(state.get("repeats", 0))
        self.allocation.load_state_dict(state.get("allocation", {}))
        if self.kernel is not None and "kernel" in state:
            self.kernel.load_state_dict(state["kernel"])
