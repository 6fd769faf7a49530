"""The first evaluations after the design: proposals that maximize the kernel members' expected improvement.

While the pool is small (``search.kernel.until`` successful evaluations), the network proposers ask
the Gaussian-process members of ``kernel_members`` instead of the networks: fit them to the pool,
then climb the members' mean expected improvement from many starts (the best of a scrambled Sobol
sample of candidates, and the best point so far) and propose its maximizer. Several proposals in a
round, or points still being evaluated, are handled by fantasy: each chosen or pending point joins
the members' data at their predicted mean (the kriging believer), so the next maximizer looks
elsewhere. After the phase the networks take over with everything the pool holds.

A Gaussian process that has settled on a basin keeps proposing there, however wrong its length
scales are about the rest of the cube (Hartmann-6 ends in its local maximum on about one seed in
seven that way). So, once the pool holds ``restart_from`` evaluations, the phase restarts when the
best since the last restart has not risen for ``restart_after`` evaluations, as TuRBO does: a fresh
Latin hypercube of ``dim + 1`` points, and from then on the members are fitted to the evaluations
since the restart only. A known budget must leave ``restart_room`` evaluations after a restart: a
short run has no time to find and polish a new basin. Nor does a noisy objective restart (one whose
repeated point returned another value): there a lucky draw sets the best, and its not rising says
little. The pool keeps everything; the networks after the phase learn from all of it.

Expected improvement on a model with a noise floor stalls short of a smooth peak, so between its
proposals the phase makes polishing steps (``search.kernel.polish``): a quadratic fitted to the
evaluations nearest the best point, where it fits them well, maximized within their box.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from scipy.stats import qmc

from ..engine.ledger import Ledger, Proposal
from ..engine.pool import Provenance
from ..engine.recommendation import noise_seen
from ..members.feasibility import Feasibility
from ..members.kernel_evolution import KernelEvolution
from ..members.kernel_members import KernelMembers, mixture_log_ei
from ..members.targets import poisson_weights, standardized, train_targets
from .search import distinct, initial_design, quadratic_step

SAME = 1e-7  # points closer than this (unit cube) are one point: evaluating it again tells nothing new


class KernelSearch:
    """Expected-improvement proposals from ``search.kernel.members`` Gaussian-process members."""

    def __init__(self, dim: int, cfg: DictConfig, seed: int, rng: np.random.Generator, space: Any = None,
                 evolution: KernelEvolution | None = None):
        self.cfg, self.dim, self.seed, self.rng = cfg, dim, seed, rng
        self.space = space  # a named Space: candidates and the climbed points are judged as the settings they are
        self.members = KernelMembers(dim, cfg.members)
        self.evolution = evolution  # generations of the members' genes (strategy nes), or None
        self.fits = 0  # fits so far: each round draws a fresh set of candidates
        self.origin = 0  # the members learn from the successful evaluations from this one on (the last restart)
        self.restarts = 0
        self.events: list[dict] = []  # restarts, for the run's lineage events (taken by the network proposer)
        self.feasibility: Feasibility | None = None  # where evaluations failed, refitted every round

    def active(self, ledger: Ledger) -> bool:
        """Whether the phase still proposes: the pool holds fewer than ``until`` successful evaluations."""
        return int(ledger.pool.ok.sum()) < self.cfg.until

    def plan(self, ledger: Ledger, n: int, round: int, budget: int = 0) -> list[Proposal]:
        """``n`` proposals: fit the members, then in turn maximize expected improvement and fantasize the point
        (or, when the phase has stalled and ``budget`` leaves room, a restart's fresh design)."""
        pool = ledger.pool
        ok = pool.ok
        values = pool.y[ok]
        noisy = noise_seen(pool.x, pool.y)  # (once a round: the restart, the polish and the taken points ask)
        room = not budget or budget - len(pool) >= self.cfg.restart_room
        if room and self._stalled(values) and not noisy:
            return self._restart(pool.x[ok], values, len(pool), round)
        if len(values) - self.origin < 2:  # a restart's design is still out (more workers than its points)
            point = self.rng.random((1, self.dim))
            return [Proposal((self.space.snap(point) if self.space is not None else point)[0],
                             Provenance("random", round=round))]
        polished = None if noisy else self._polish(ledger)
        if polished is not None:
            return [Proposal(polished, Provenance("polish", round=round, reference=float(pool.y[pool.best_index()])))]
        self.feasibility = Feasibility.of(pool.x, ok) if self.cfg.feasibility else None
        x = pool.x[ok][self.origin:]
        if self.evolution is not None and self.evolution.due(len(x), self.dim):
            self.events += self.evolution.step(self.members, x, values[self.origin:], len(pool))
        y = self.targets(values[self.origin:])  # [k, n]: each member's own targets
        k = self.members.size
        weights = None
        if k > 1:  # each member on its own bootstrap of the pool
            weights = poisson_weights(self.rng, (k, y.shape[1]))
            weights[weights.sum(1) == 0] = 1.0
        self.members.fit(x, y, weights)
        self.fits += 1
        best = torch.as_tensor(y.max(1))
        data = (torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64),
                torch.ones(k, y.shape[1], dtype=torch.float64) if weights is None else torch.as_tensor(weights))
        pending = [p.x for _, p in ledger.pending]
        if pending:  # points being evaluated: believe the model there
            data, best = self._fantasize(np.stack(pending), data, best)
        out = []
        # a deterministic objective is never evaluated twice at one point (EI climbs a run whose best lies at a
        # corner of the box into that corner again and again); a noisy one may be
        taken = None if noisy else ledger.taken()
        for _ in range(n):
            xq, value = self._maximize(best, x[int(np.argmax(values[self.origin:]))], taken)
            if taken is not None:
                taken = np.vstack([taken, xq[None]])
            out.append(Proposal(xq, Provenance("kernel", round=round, predicted=value,
                                               reference=float(pool.y[pool.best_index()]))))
            if len(out) < n:
                data, best = self._fantasize(xq[None], data, best)
        return out

    def _polish(self, ledger: Ledger) -> np.ndarray | None:
        """A polishing step at the best point of a deterministic objective, or None: when a step is due, a
        quadratic fits the best point's neighbours, and its maximizer is a setting not yet evaluated.

        Expected improvement on a Gaussian process with a noise floor stalls some way short of a smooth
        optimum; a Newton step on the evaluations themselves does not. Due every other round after a
        step that improved on the best, backing off (4, 8, 16 rounds) while they fail: read from the pool,
        so a resumed run decides alike. (The caller asks only when no noise was seen: on a noisy
        objective the best value is partly luck.)
        """
        pool = ledger.pool
        if not self.cfg.polish:
            return None
        since, fails = 0, 0
        for p, y in zip(reversed(pool.provenance), reversed(pool.y)):
            if p.source == "polish":
                if y > p.reference:
                    break
                fails += 1
            elif p.source == "kernel" and not fails:
                since += 1
        if since < min(2 ** (fails + 1), 16) - 1:
            return None
        ok = pool.ok
        x = quadratic_step(pool.x[ok], pool.y[ok], pool.x[pool.best_index()], self.cfg.polish)
        if x is None:
            return None
        if self.space is not None:  # judged as the setting it is: snapped, it may be one evaluated already
            x = self.space.snap(x[None])[0]
        return x if distinct(x[None], ledger.taken(), SAME)[0] else None

    @property
    def fitted(self) -> bool:
        """Whether the members have been fitted (and can predict)."""
        return self.members.fitted

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The members' mean prediction at x [m, d] (on the scale of their targets)."""
        with torch.no_grad():
            return self.members.predict(torch.as_tensor(x, dtype=torch.float64))[0].mean(0).numpy()

    def _stalled(self, values: np.ndarray) -> bool:
        """Whether the best since the last restart has not risen by 0.1% of the values' range for
        ``restart_after`` evaluations (never before ``restart_from`` evaluations or a segment that short)."""
        cfg = self.cfg
        segment = values[self.origin:]
        if not cfg.restart_after or len(values) < cfg.restart_from or len(segment) < cfg.restart_after + self.dim + 1:
            return False
        gain = 1e-3 * (float(values.max()) - float(values.min()) + 1e-12)
        reached = int(np.argmax(segment >= segment.max() - gain))  # first within the gain of the segment's best
        return len(segment) - reached >= cfg.restart_after

    def _restart(self, x: np.ndarray, values: np.ndarray, evaluations: int, round: int) -> list[Proposal]:
        """A fresh Latin hypercube of dim + 1 points; the members learn from the evaluations after it only."""
        best = self.origin + int(np.argmax(values[self.origin:]))
        self.events.append({"event": "restart", "evaluations": evaluations, "phase": "kernel",
                            "basin": x[best].tolist()})
        self.origin = len(values)
        self.restarts += 1
        if self.evolution is not None:
            self.evolution.restarted()
        design = initial_design(self.dim + 1, self.dim, "lhs", self.seed + 1000 * self.restarts)
        if self.space is not None:
            design = self.space.snap(design)
        return [Proposal(point, Provenance("random", round=round)) for point in design]

    def targets(self, values: np.ndarray) -> np.ndarray:
        """The members' targets [k, n]: ``y_transform=rank`` gives every member the normal scores of the ranks,
        else each member warps and standardizes the values by its own ``warp`` gene."""
        if self.cfg.y_transform == "rank":
            y = standardized(train_targets(values, "rank"))  # rank scores have a spread below 1
            return np.broadcast_to(y, (self.members.size, len(y))).copy()
        return self.members.targets(standardized(values))

    def _fantasize(self, xs: np.ndarray, data: tuple[torch.Tensor, ...],
                   best: torch.Tensor) -> tuple[tuple, torch.Tensor]:
        """Condition the members on xs observed without noise at their predicted mean (the kriging believer;
        the members' mean where they share their targets, each member's own where it warps them), so that
        expected improvement vanishes there; the incumbents rise with them."""
        data_x, data_y, data_w = data
        xt = torch.as_tensor(xs, dtype=torch.float64)
        with torch.no_grad():
            mean = self.members.predict(xt)[0]
        if self.shared_targets():
            mean = mean.mean(0, keepdim=True).expand(self.members.size, -1)
        data = (torch.cat([data_x, xt]), torch.cat([data_y, mean], 1),
                torch.cat([data_w, torch.full((self.members.size, len(xs)), 1e6, dtype=torch.float64)], 1))
        self.members.condition(*data)
        return data, torch.maximum(best, mean.max(1).values)

    def shared_targets(self) -> bool:
        """Whether every member learns the same targets (one warp, or ranks)."""
        return self.cfg.y_transform == "rank" or bool((self.members.warp == self.members.warp[0]).all())

    def _maximize(self, best: torch.Tensor, incumbent: np.ndarray,
                  taken: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """The maximizer of the mixture log EI: the best of ``candidates`` Sobol points and of the incumbent,
        each climbed by Adam with a step that shrinks from 0.05 to 1e-4 (in the unit cube); not one of the points
        ``taken`` (if given): then the best climbed point elsewhere, else the best candidate elsewhere."""
        cfg = self.cfg
        raw = qmc.Sobol(self.dim, scramble=True, seed=self.seed + 7727 * self.fits).random(cfg.candidates)
        if self.space is not None:
            raw = self.space.snap(raw)
        with torch.no_grad():
            score = self.acquisition(torch.as_tensor(raw), best)
        top = raw[torch.argsort(score, descending=True)[: cfg.starts - 1].numpy()]
        x = torch.as_tensor(np.vstack([top, incumbent[None]]), dtype=torch.float64)
        start = x.clone()
        m, v = torch.zeros_like(x), torch.zeros_like(x)
        steps = cfg.ascent_steps
        for t in range(1, steps + 1):
            x.requires_grad_(True)
            (g,) = torch.autograd.grad(self.acquisition(x, best).sum(), x)
            lr = 0.05 * (1e-4 / 0.05) ** ((t - 1) / max(steps - 1, 1))
            with torch.no_grad():
                m.mul_(0.9).add_(0.1 * g)
                v.mul_(0.999).add_(0.001 * g * g)
                x = (x + lr * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-12)).clamp(0.0, 1.0)
        x = x.detach()
        if self.feasibility is not None:  # expected improvement leads a climb over the border of where evaluations
            x = torch.cat([x, start])  # fail, and every climb may end there: their starts are chosen from too
        if self.space is not None:
            return self._settle(x.numpy(), best)
        with torch.no_grad():
            final = self.acquisition(x, best)
        i = int(torch.argmax(final))
        if not torch.isfinite(x[i]).all():  # a degenerate fit (e.g. values near 1e308): a candidate instead
            return raw[0].copy(), float("-inf")
        if taken is not None and not distinct(x[i].numpy()[None], taken, SAME)[0]:
            free = distinct(x.numpy(), taken, SAME)
            if free.any():
                i = int(torch.argmax(torch.where(torch.as_tensor(free), final, -torch.inf)))
            else:
                free = distinct(raw, taken, SAME)
                with torch.no_grad():
                    scores = torch.where(torch.as_tensor(free), score, -torch.inf)
                j = int(torch.argmax(scores))
                return raw[j].copy(), float(scores[j])
        return x[i].numpy().copy(), float(final[i])

    def acquisition(self, x: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
        """What a proposal maximizes at x [m, d]: the members' mixture log expected improvement, plus the log
        chance that the evaluation succeeds where some have failed (``members/feasibility.py``)."""
        value = mixture_log_ei(self.members, x, best)
        return value if self.feasibility is None else value + self.feasibility.log_chance(x)

    def _settle(self, climbed: np.ndarray, best: torch.Tensor) -> tuple[np.ndarray, float]:
        """On a named space: the climbed points snapped to settings, the best by EI, then improved greedily one
        discrete step at a time (another choice, an integer one up or down) while EI rises."""
        def score(points: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return self.acquisition(torch.as_tensor(points, dtype=torch.float64), best).numpy()

        points = self.space.snap(climbed)
        values = score(points)
        x, value = points[int(np.argmax(values))], float(values.max())
        for _ in range(8):
            near = self.space.neighbours(x)
            if not len(near):
                break
            s = score(near)
            if not np.isfinite(s).any() or s.max() <= value:
                break
            x, value = near[int(np.argmax(s))], float(s.max())
        return x.copy(), value

    def state_dict(self) -> dict[str, Any]:
        """The members' hyper-parameters, the fit count and where the last restart began."""
        return {"members": self.members.state_dict(), "fits": self.fits, "origin": self.origin,
                "restarts": self.restarts,
                **({"evolution": self.evolution.state_dict()} if self.evolution is not None else {})}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (a checkpoint of before restarts has none)."""
        self.members.load_state_dict(state["members"])
        self.fits = int(state["fits"])
        self.origin, self.restarts = int(state.get("origin", 0)), int(state.get("restarts", 0))
        if self.evolution is not None and "evolution" in state:
            self.evolution.load_state_dict(state["evolution"])
