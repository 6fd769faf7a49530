"""The ask / tell loop: pool + population + search + training, and ``optimize`` on top of it.

``Optimizer`` owns the state of a run and works in the unit cube; only ``ask`` and ``tell`` see the
user's bounds. Proposals are planned a round at a time into a queue: a round retrains the
population on what the pool holds (when new results arrived), runs every member's ascents from its
siblings' best points, and adds Gaussian samples around them. ``ask`` pops from the queue, so it
can be called again before earlier points are told.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.stats import norm

from .config import make_config
from .evolution import Evolution
from .pool import Provenance, SamplePool
from .population import Population
from .problems import check_bounds
from .remote import scalar
from .search import Schedule, ascend, distinct, gaussian, initial_design, original_paths, quadratic_step
from .training import OptimizerState, fit, fit_es

_CHECKPOINT_VERSION = 1


@dataclass
class _Proposal:
    x: np.ndarray  # unit cube
    provenance: Provenance


@dataclass
class Result:
    """What ``optimize`` returns: the best point, every evaluation in order, and the lineage."""

    best_x: np.ndarray
    best_y: float
    X: np.ndarray
    y: np.ndarray
    history: pd.DataFrame
    lineage: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class Optimizer:
    """Ask / tell optimizer over a box. Maximizes by default; ``direction="minimize"`` flips it.

    ``config`` takes the keys of ``conf/`` (groups ``strategy``, ``ensemble``, ``search``,
    ``evolution``, ``evaluator`` and ``budget``); unknown keys are rejected. The same seed and config
    give the same proposals. With ``journal=PATH`` every told evaluation is appended to that file
    (JSON lines, fsynced) before ``tell`` returns, and ``load`` replays what a checkpoint missed.
    """

    def __new__(cls, bounds: Sequence[Sequence[float]] | None = None,
                config: Mapping[str, Any] | DictConfig | None = None, *args: Any, **kwargs: Any) -> "Optimizer":
        # Optimizer(bounds, strategy=...) of a baseline (random, cmaes, tpe, ...) is that baseline
        if cls is Optimizer and bounds is not None:
            from .baselines import BASELINES, Baseline

            chosen = {k: v for k, v in kwargs.items() if k == "strategy"}
            if make_config(config, **chosen).strategy.name in BASELINES:
                cls = Baseline
        return super().__new__(cls)

    def __init__(self, bounds: Sequence[Sequence[float]], config: Mapping[str, Any] | DictConfig | None = None,
                 seed: int | None = 0, direction: str = "maximize", journal: str | os.PathLike | None = None,
                 **overrides: Any):
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction={direction!r}: choose maximize or minimize")
        self.bounds = check_bounds(bounds)
        self.cfg = make_config(config, **overrides)
        # seed=None: a fresh seed, kept in opt.seed so the run can be repeated
        self.seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        self.sign = 1.0 if direction == "maximize" else -1.0
        self.dim = self.bounds.shape[0]
        self.generator = torch.Generator().manual_seed(self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.pool = SamplePool(self.dim)
        self.population = Population(self.dim, self.cfg.ensemble, self.generator)
        self.opt_state = OptimizerState.zeros(self.population)
        self.schedule = Schedule.start(self.cfg.search)
        self.sample_weights = np.empty((self.population.size, 0))
        self.pending: list[tuple[np.ndarray, _Proposal]] = []  # (native x as returned by ask, proposal)
        self.round = 0
        self.trained_on = 0
        self.paths: dict[int, list[float]] = {}  # original scheme: [best y on path, steps without gain]
        self.ascent_tally = [0, 0]  # successes, trials since the last schedule update
        self.surrogate_error = float("nan")
        self.basins = np.empty((0, self.dim))  # centres of basins a restart has left (unit cube)
        self.stall, self.last_best = 0, -np.inf
        n_regions = max(self.cfg.search.basins - 1, 0)
        self.region_best, self.region_stall = np.full(n_regions, -np.inf), np.zeros(n_regions, dtype=int)
        self.evolution = Evolution(self.cfg.evolution, self.population, self.seed)
        self.busy = False  # inside ask / tell: an interrupt then waits for the bookkeeping to finish
        self.stop_requested = False
        self.seconds = 0.0  # wall time spent so far (kept across checkpoints)
        self.journal_path = None if journal is None else os.path.abspath(os.fspath(journal))
        self.events: list[dict] = self.evolution.births(self.population, 0) if self.evolves else []
        self.n_design = self.cfg.search.n_init or self._auto_init()  # initial-design points handed out
        self.queue: list[_Proposal] = [_Proposal(x, Provenance("initial"))
                      for x in initial_design(self.n_design, self.dim, self.cfg.search.init_design, self.seed)]

    def _auto_init(self) -> int:
        n = max(20, 6 * self.dim)
        budget = self.cfg.budget
        return min(n, max(2, budget // 4)) if budget else n

    @contextlib.contextmanager
    def bookkeeping(self) -> Iterator[None]:
        """Mark ask / tell / checkpointing as under way: an interrupt then waits until it is done."""
        self.busy = True
        try:
            yield
        finally:
            self.busy = False

    @property
    def evolves(self) -> bool:
        """Whether the population manager forks and merges members (strategy nes)."""
        return self.cfg.strategy.name in ("nes", "nes_es") and self.cfg.evolution.every > 0

    def _fit(self, pop: Population, state: OptimizerState, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
             steps: int) -> None:
        """Train ``pop`` with the strategy's trainer: back-propagation, or evolution strategies (es, nes_es)."""
        st, batch = self.cfg.strategy, self.cfg.ensemble.batch_size
        if st.name in ("es", "nes_es"):
            fit_es(pop, x, t, w, steps, batch, self.generator, st.es_popsize, st.es_stdev, st.es_lr)
        else:
            fit(pop, state, x, t, w, steps, batch, self.generator)

    # ------------------------------------------------------------------ the public loop
    def ask(self, n: int | None = None) -> np.ndarray:
        """The next ``n`` points to evaluate, [n, dim] inside the bounds (n=None: the rest of this round)."""
        if n is not None and (not isinstance(n, (int, np.integer)) or n < 1):
            raise ValueError(f"ask(n={n!r}): n must be a positive integer")
        if not self.queue:
            self._plan()
        n = len(self.queue) if n is None else int(n)
        out = []
        while len(out) < n:
            if not self.queue:
                self._plan()
            out.append(self.queue.pop(0))
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        X = np.clip(lo + np.stack([p.x for p in out]) * (hi - lo), lo, hi)
        self.pending.extend((x.copy(), p) for x, p in zip(X, out))
        return X

    def tell(self, X: np.ndarray, y: np.ndarray | Sequence[float], reasons: Sequence[str] | None = None) -> None:
        """Report values for points returned by ``ask`` (in any order). NaN or inf marks a failed
        evaluation; ``reasons`` (one string per point) may say why it failed."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        y = np.atleast_1d(np.asarray(y, dtype=float)).reshape(-1)
        if X.shape[1] != self.dim:
            raise ValueError(f"tell: X has {X.shape[1]} columns but the bounds have {self.dim} dimensions")
        if X.shape[0] != y.shape[0]:
            raise ValueError(f"tell: {X.shape[0]} points but {y.shape[0]} values")
        matched = []
        taken: set[int] = set()
        for row in X:
            i = self._find_pending(row, taken)
            if i is None:
                raise ValueError(f"tell: the point {row.tolist()} was never asked (or was told already); "
                                 "tell only points returned by ask")
            taken.add(i)
            matched.append(i)
        proposals = [self.pending[i][1] for i in matched]
        self.pending = [p for i, p in enumerate(self.pending) if i not in taken]
        values = np.where(np.isfinite(y), self.sign * y, np.nan)
        units = np.stack([p.x for p in proposals])
        reasons = [""] * len(values) if reasons is None else [str(r) for r in reasons]
        if self.journal_path is not None:  # on disk before anything else changes
            from .pool import Journal

            n = len(self.pool)
            Journal(self.journal_path).write([
                Journal.row(n + i, X[i], units[i], float(self.sign * values[i]), reasons[i], proposals[i].provenance)
                for i in range(len(values))])
        self._score_members(units, values)
        self.pool.add(units, values, [p.provenance for p in proposals], reasons)
        self._grow_weights(len(values), np.isfinite(values))
        self._account(proposals, values)

    @property
    def best(self) -> tuple[np.ndarray, float] | tuple[None, None]:
        """(x, y) of the best evaluation so far, in the user's coordinates and sign."""
        i = self.pool.best_index()
        if i is None:
            return None, None
        return self._to_native(self.pool.x[i]), float(self.sign * self.pool.y[i])

    @property
    def n_evaluations(self) -> int:
        return len(self.pool)

    def history(self) -> pd.DataFrame:
        """One row per evaluation, in order: x (native), y (user sign), status and provenance."""
        X = self._to_native(self.pool.x)
        df = pd.DataFrame(X, columns=[f"x{i}" for i in range(self.dim)])
        df.insert(0, "evaluation", np.arange(len(self.pool)))
        df["y"] = self.sign * self.pool.y
        df["status"] = np.where(self.pool.ok, "ok", "failed")
        df["reason"] = self.pool.reasons if len(self.pool) else []
        for name in ("source", "member", "sibling", "round"):
            df[name] = self.pool.column(name) if len(self.pool) else []
        ok_y = np.where(self.pool.ok, self.pool.y, -np.inf)
        df["best_y"] = self.sign * np.maximum.accumulate(ok_y) if len(self.pool) else []
        return df

    def metrics(self) -> dict[str, float]:
        """Plain numbers describing the run now, for progress and tracking."""
        _, best_y = self.best
        return {
            "best_y": float("nan") if best_y is None else best_y,
            "evaluations": float(len(self.pool)),
            "surrogate_error": self.surrogate_error,
            "ascent_steps": self.schedule.steps,
            "sigma": self.schedule.sigma,
            "success_rate": self.schedule.success_rate,
            "members": float(self.population.size),
            "diversity": self._diversity(),
            "generation": float(self.evolution.generation),
            "round": float(self.round),
            "failed_evaluations": float(len(self.pool) - self.pool.ok.sum()),
        }

    def _diversity(self) -> float:
        """How much the members disagree: the mean standard deviation of their predictions on the newest 100 points."""
        if self.trained_on == 0 or self.population.size < 2:
            return float("nan")
        x = torch.tensor(self.pool.x[-100:], dtype=torch.float32)
        with torch.no_grad():
            pred = self.population.forward(x.unsqueeze(0).expand(self.population.size, -1, -1))
        return float(pred.std(0).mean())

    # ------------------------------------------------------------------ planning a round
    def _plan(self) -> None:
        if any(p.provenance.source == "initial" for _, p in self.pending):
            # asynchronous asks while the initial design is still out: a model of part of it would steer a
            # whole round, so the free worker gets the design's next point instead
            self.n_design += 1
            x = initial_design(self.n_design, self.dim, self.cfg.search.init_design, self.seed)[-1]
            self.queue.append(_Proposal(x, Provenance("initial")))
            return
        ok = self.pool.ok
        if ok.sum() < 2:
            # nothing to learn from yet (e.g. every ask so far is still pending): sample at random
            self.queue.append(_Proposal(self.rng.random(self.dim), Provenance("random", round=self.round)))
            return
        self._train()
        self.round += 1
        if self.cfg.search.mode == "original":
            self._plan_original()
        else:
            self._plan_surrogate()

    def _targets(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ok = self.pool.ok
        y = self.pool.y[ok]
        if self.cfg.ensemble.y_transform == "rank":
            ranks = np.argsort(np.argsort(y, kind="stable"), kind="stable")
            t = norm.ppf((ranks + 0.5) / len(y))
        else:
            t = (y - y.mean()) / (y.std() + 1e-12)
        x = torch.tensor(self.pool.x[ok], dtype=torch.float32)
        w = torch.tensor(self._member_weights()[:, ok], dtype=torch.float32)
        return x, torch.tensor(t, dtype=torch.float32), w

    def _member_weights(self) -> np.ndarray:
        w = self.sample_weights.copy()
        s = self.cfg.search
        if s.windows and self.population.size > 1:
            n = len(self.pool)
            window = s.window_size or max(10, (s.rotate_every // self.population.size) // 10 * 10)
            w = w * self.pool.window_weights(self.population.size, window, n // max(1, s.rotate_every))
        dead = w.sum(1) == 0
        w[dead] = self.pool.ok.astype(float)  # a member whose draw missed everything sees all
        return w

    def _grow_weights(self, n: int, ok: np.ndarray) -> None:
        k = self.population.size
        if self.cfg.ensemble.bootstrap and k > 1:
            new = self.rng.poisson(1.0, size=(k, n)).astype(float)
        else:
            new = np.ones((k, n))
        self.sample_weights = np.concatenate([self.sample_weights, new * ok[None, :]], axis=1)

    def _train(self) -> None:
        n_ok = int(self.pool.ok.sum())
        if n_ok == self.trained_on:
            return
        e = self.cfg.ensemble
        steps = e.train_steps_initial if self.trained_on == 0 else e.train_steps
        x, t, w = self._targets()
        if self.evolves and self.trained_on > 0 and self.evolution.due(len(self.pool)):
            self._evolve(x, t, w)
        self._fit(self.population, self.opt_state, x, t, w, steps)
        self.trained_on = n_ok

    def _evolve(self, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> None:
        """One generation of the population manager. The forks train on what the members have seen and
        are judged on the evaluations no member has trained on yet (the newest ones)."""
        old = self.trained_on

        def draw(n: int) -> torch.Tensor:
            rows = self.rng.poisson(1.0, size=(n, old)).astype(float)
            rows[rows.sum(1) == 0] = 1.0
            return torch.tensor(rows, dtype=torch.float32)

        events = self.evolution.step(self.population, self.opt_state, (x[:old], t[:old], w[:, :old]),
                                     (x[old:], t[old:]), len(self.pool), draw, self._fit)
        for ev in events:
            if ev["event"] == "replace":  # the newcomer draws its own bootstrap weights
                i = self.population.ids.index(ev["id"])
                self.sample_weights[i] = self.rng.poisson(1.0, size=len(self.pool)) * self.pool.ok
        self.events.extend(events)

    def sibling_bests(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each member's best point: the best evaluation it proposed, else the pool's next-best point.

        Returns x [k, d] (unit cube), y [k] and whether the point is the member's own find [k].
        """
        k = self.population.size
        ok = np.flatnonzero(self.pool.ok)
        fresh = ok[self._outside_basins(self.pool.x[ok])]
        ok = fresh if fresh.size else ok
        order = ok[np.argsort(-self.pool.y[ok], kind="stable")]
        member = self.pool.column("member")[order] if len(self.pool) else np.empty(0, dtype=int)
        xs, ys, own = np.empty((k, self.dim)), np.empty(k), np.zeros(k, dtype=bool)
        fallback = 0
        for r in range(k):  # k is small and this runs once a round, outside the hot path
            mine = np.flatnonzero(member == r)
            if mine.size:
                i, own[r] = order[mine[0]], True
            else:
                i = order[min(fallback, len(order) - 1)]
                fallback += 1
            xs[r], ys[r] = self.pool.x[i], self.pool.y[i]
        return xs, ys, own

    def _runners_up(self) -> tuple[np.ndarray, np.ndarray]:
        """Pool indices of the best points of up to ``basins - 1`` regions apart from the best one, and
        for each member the position in that list of the region it climbs (-1: the usual starts).

        A region keeps climbing where its own members' evaluations went: its centre is the best of them
        while that lies farther than the basin radius from the pool's best point. A region without
        such a point is (re)opened greedily over the better half of the pool, best first: a point
        opens it when it lies farther than the basin radius from the best point and every other centre.
        Regions close for the rest of the run after ``basins_until`` of a known budget, and one by one
        when their best point has not gained for ``region_patience`` rounds.
        """
        s = self.cfg.search
        k = self.population.size
        none = np.empty(0, dtype=int), np.full(k, -1)
        budget = self.cfg.budget or 0
        if s.basins <= 1 or (budget and s.basins_until < 1 and len(self.pool) >= s.basins_until * budget):
            return none
        ok = np.flatnonzero(self.pool.ok)
        order = ok[np.argsort(-self.pool.y[ok], kind="stable")]
        radius = s.basin_radius * np.sqrt(self.dim)
        region = self._region_ids()
        member = self.pool.column("member")[order]
        ascent = np.array([self.pool.provenance[i].source in ("ascent", "quadratic", "gaussian") for i in order],
                          dtype=bool)
        centres, opened = [order[0]], []

        def apart(i: int) -> bool:
            return bool(np.linalg.norm(self.pool.x[centres] - self.pool.x[i], axis=1).min() > radius)

        for j in range(s.basins - 1):
            if s.region_patience and self.region_stall[j] >= s.region_patience:
                continue  # closed for good: it stopped gaining, its members climb with the rest
            own = order[ascent & np.isin(member, np.flatnonzero(region == j))]
            kept = own[0] if own.size and apart(own[0]) else None
            if kept is None:
                kept = next((i for i in order[: max(2, len(order) // 2)] if apart(i)), None)
            if kept is None:
                break
            centres.append(kept)
            opened.append(j)
            gained = self.pool.y[kept] > self.region_best[j]
            self.region_best[j] = max(self.region_best[j], self.pool.y[kept])
            self.region_stall[j] = 0 if gained else self.region_stall[j] + 1
        position = {j: p for p, j in enumerate(opened)}
        return np.array(centres[1:], dtype=int), np.array([position.get(int(j), -1) for j in region])

    def _region_ids(self) -> np.ndarray:
        """For each member, the runner-up region it belongs to (-1: none): the last ``basin_share`` of them."""
        k = self.population.size
        region = np.full(k, -1)
        n = self.cfg.search.basins - 1
        if n > 0:
            m = min(k - 1, int(round(self.cfg.search.basin_share * k)))
            for j in range(m):
                region[k - 1 - j] = j % n
        return region

    def _configured_round(self) -> tuple[int, int]:
        k = self.population.size
        return min(k, self.cfg.search.proposals_per_round or k), self.cfg.search.gaussian_per_round

    def round_size(self) -> tuple[int, int]:
        """Ascent and Gaussian proposals per round: the configured sizes, made smaller when the budget
        leaves fewer than ``search.min_rounds`` rounds of them after the initial design (a short run
        learns more from several small rounds than from a few large ones)."""
        s = self.cfg.search
        n_prop, n_gauss = self._configured_round()
        left = (self.cfg.budget or 0) - self.n_design
        if self.cfg.budget and s.min_rounds and left < s.min_rounds * (n_prop + n_gauss):
            f = max(left, 0) / (s.min_rounds * (n_prop + n_gauss))
            n_prop, n_gauss = max(1, round(n_prop * f)), min(n_gauss, max(1, round(n_gauss * f)))
        return n_prop, n_gauss

    def _taken(self) -> np.ndarray:
        parts = [self.pool.x]
        if self.pending:
            parts.append(np.stack([p.x for _, p in self.pending]))
        if self.queue:
            parts.append(np.stack([p.x for p in self.queue]))
        return np.concatenate(parts)

    def _outside_basins(self, x: np.ndarray) -> np.ndarray:
        """Mask of points x [m, d] farther than the restart radius from every basin left behind."""
        if not len(self.basins):
            return np.ones(len(x), dtype=bool)
        radius = self.cfg.search.restart_radius * np.sqrt(self.dim)
        return np.linalg.norm(x[:, None, :] - self.basins[None], axis=-1).min(1) > radius

    def _stagnated(self, best: float) -> bool:
        """Count rounds without a gain of the best point outside the basins left; True when it is time to leave."""
        patience = self.cfg.search.restart_patience
        y = self.pool.y[self.pool.ok]
        with np.errstate(all="ignore"):  # absurdly large values must not break the bookkeeping
            gained = best > self.last_best + 1e-3 * (y.std() + 1e-12)
        if gained:
            self.stall, self.last_best = 0, best
        else:
            self.stall += 1
        return patience > 0 and self.stall >= patience

    def _restart(self, x_best: np.ndarray) -> None:
        """Leave the basin around x_best: later proposals avoid it, and a fresh space-filling batch re-explores."""
        s = self.cfg.search
        self.basins = np.concatenate([self.basins, x_best[None]])
        self.stall, self.last_best = 0, -np.inf
        self.schedule = Schedule.start(s)
        n = s.restart_points or max(2, (s.n_init or self._auto_init()) // 2)
        seed = self.seed + 7919 * len(self.basins)
        design = initial_design(n, self.dim, s.init_design, seed)
        design = design[self._outside_basins(design)]
        self.queue.extend(_Proposal(x, Provenance("random", round=self.round)) for x in design)
        self.events.append({"event": "restart", "evaluations": len(self.pool), "basin": x_best.tolist()})

    def _plan_surrogate(self) -> None:
        s = self.cfg.search
        k = self.population.size
        bests, best_y, _ = self.sibling_bests()
        if self._stagnated(float(best_y.max())):
            self._restart(bests[int(np.argmax(best_y))])
            if self.queue:
                return
            bests, best_y, _ = self.sibling_bests()
        global_best = self.pool.y[self.pool.best_index()]
        randoms = self.rng.random((s.random_starts, self.dim))
        runners, region = self._runners_up()
        starts_np = np.concatenate([bests, randoms, self.pool.x[runners]])
        refs = np.concatenate([best_y, np.full(s.random_starts, global_best), self.pool.y[runners]])
        starts = torch.tensor(starts_np, dtype=torch.float32).unsqueeze(0).expand(k, -1, -1)
        low, high = np.zeros_like(starts_np), np.ones_like(starts_np)
        n_prop, n_gauss = self.round_size()
        short = n_prop < self._configured_round()[0]  # a run whose rounds min_rounds shrinks
        radius = s.ascent_radius or (s.short_radius if short else 0.0)
        if radius > 0:  # a surrogate fitted to few points is trusted only near where it climbs from
            low, high = np.clip(starts_np - radius, 0.0, 1.0), np.clip(starts_np + radius, 0.0, 1.0)
        # a runner-up region is climbed locally: its ascents stay in a box of half-width basin_radius
        # around its best point, else they run off to the surrogate's maximum in the leading region
        if len(runners):
            box = slice(len(starts_np) - len(runners), None)
            low[box] = np.clip(starts_np[box] - s.basin_radius, 0.0, 1.0)
            high[box] = np.clip(starts_np[box] + s.basin_radius, 0.0, 1.0)
        ends, pred = ascend(self.population, starts, int(round(self.schedule.steps)), s.ascent_lr,
                            torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32))
        if s.select != "own" and k > 1:  # judge every end point by the whole population
            with torch.no_grad():
                flat = ends.reshape(1, -1, self.dim).expand(k, -1, -1)
                votes = self.population.forward(flat)
                pred = votes.mean(0)
                if s.select == "ucb":  # members disagree where the pool says little: worth a look
                    pred = pred + s.beta * votes.std(0)
                pred = pred.view(k, -1)
        ends, pred = ends.numpy().astype(float), pred.numpy()
        if len(self.basins):  # never propose inside a basin already left
            inside = ~self._outside_basins(ends.reshape(-1, self.dim)).reshape(pred.shape)
            pred = np.where(inside, -np.inf, pred)

        proposers = [(self.round * n_prop + i) % k for i in range(n_prop)]
        taken = self._taken()
        chosen: list[_Proposal] = []
        for r in proposers:
            order = np.argsort(-pred[r], kind="stable")
            if region[r] >= 0:  # member r climbs from a runner-up region
                order = np.array([k + s.random_starts + region[r]])
            elif s.assignment == "rotate":  # member r climbs from one sibling's point, a new sibling each round
                order = order[(order == (r + self.round) % k) | (order >= k)]
            else:
                order = order[order < k + s.random_starts]
            order = order[np.isfinite(pred[r][order])]
            if not order.size:  # every end point lies in a basin already left: sample elsewhere
                x = self.rng.random((64, self.dim))
                x = x[np.argmax(self._outside_basins(x))]
                chosen.append(_Proposal(x, Provenance("random", member=r, round=self.round)))
                taken = np.concatenate([taken, x[None]])
                continue
            ok = distinct(ends[r][order], taken, s.min_distance)
            j = order[np.argmax(ok)] if ok.any() else order[0]
            x = ends[r][j] if ok.any() else gaussian(ends[r][j][None], self.schedule.sigma, self.rng)[0]
            prov = Provenance("ascent", member=r, sibling=int(j) if j < k else -1, round=self.round,
                              predicted=float(pred[r][j]), reference=float(refs[j]))
            chosen.append(_Proposal(x, prov))
            taken = np.concatenate([taken, x[None]])
        # refining the best point: a Newton step on a quadratic fitted to the evaluations around it where
        # there are enough (search.polish), else a Gaussian sample around it; the next ones refine the
        # runner-up regions' best points the same way, and the rest are Gaussian samples around random
        # siblings' bests
        polished = None
        ok = self.pool.ok
        if s.polish and n_gauss:
            polished = quadratic_step(self.pool.x[ok], self.pool.y[ok], self.pool.x[self.pool.best_index()])
            if polished is not None and distinct(polished[None], taken, 1e-12)[0]:
                chosen.append(_Proposal(polished, Provenance("quadratic", round=self.round, reference=global_best)))
            else:
                polished = None
        for i in range(n_gauss):
            if i == 0 and polished is not None:
                continue
            if 1 <= i <= len(runners):  # a runner-up region gets its own refinement of its best point
                j, owners = runners[i - 1], np.flatnonzero(region == i - 1)
                owner = int(owners[0]) if owners.size else -1
                x = quadratic_step(self.pool.x[ok], self.pool.y[ok], self.pool.x[j]) if s.polish else None
                if x is not None and distinct(x[None], taken, 1e-12)[0]:
                    chosen.append(_Proposal(x, Provenance("quadratic", member=owner, round=self.round,
                                                          reference=self.pool.y[j])))
                else:
                    x = gaussian(self.pool.x[j][None], self.schedule.sigma, self.rng)[0]
                    chosen.append(_Proposal(x, Provenance("gaussian", member=owner, round=self.round,
                                                          reference=self.pool.y[j])))
                taken = np.concatenate([taken, x[None]])
                continue
            sib = int(np.argmax(best_y)) if i == 0 else int(self.rng.integers(k))
            x = gaussian(bests[sib][None], self.schedule.sigma, self.rng)[0]
            chosen.append(_Proposal(x, Provenance("gaussian", sibling=sib, round=self.round, reference=global_best)))
        self.queue.extend(chosen)

    def _plan_original(self) -> None:
        s = self.cfg.search
        k = self.population.size
        bests, best_y, _ = self.sibling_bests()
        starts = torch.tensor(bests, dtype=torch.float32).unsqueeze(0).expand(k, -1, -1)
        paths = original_paths(self.population, starts, s).numpy().astype(float)  # [k, k, steps, d]
        for r in range(k):
            for sib in range(k):
                pid = len(self.paths)
                self.paths[pid] = [float(best_y[sib]), 0.0]
                for step in paths[r, sib]:
                    if np.isnan(step).any():
                        break
                    self.queue.append(_Proposal(step, Provenance("original", member=r, sibling=sib, round=self.round,
                                                                 reference=float(best_y[sib]), path=pid)))
                for x in gaussian(np.repeat(bests[sib][None], s.original_gaussian, 0), s.original_sigma, self.rng):
                    self.queue.append(_Proposal(x, Provenance("gaussian", member=r, sibling=sib, round=self.round,
                                                              reference=float(best_y[sib]))))

    # ------------------------------------------------------------------ bookkeeping on tell
    def _find_pending(self, row: np.ndarray, taken: set[int]) -> int | None:
        for i, (x, _) in enumerate(self.pending):
            if i not in taken and np.array_equal(x, row):
                return i
        for i, (x, _) in enumerate(self.pending):  # tolerate a float round trip (e.g. through a file)
            if i not in taken and np.allclose(x, row, rtol=1e-9, atol=1e-12):
                return i
        return None

    def _score_members(self, units: np.ndarray, values: np.ndarray) -> None:
        """Test-then-train: how well the members predicted these points before training on them."""
        ok = np.isfinite(values)
        if self.trained_on == 0 or not ok.any():
            return
        y = self.pool.y[self.pool.ok]
        x = torch.tensor(units[ok], dtype=torch.float32)
        with torch.no_grad():
            pred = self.population.forward(x.unsqueeze(0).expand(self.population.size, -1, -1)).numpy()
        if self.cfg.ensemble.y_transform == "rank":
            target = norm.ppf(np.clip((np.searchsorted(np.sort(y), values[ok]) + 0.5) / (len(y) + 1), 1e-6, 1 - 1e-6))
        else:
            target = (values[ok] - y.mean()) / (y.std() + 1e-12)
        rmse = np.sqrt(((pred - target[None, :]) ** 2).mean(1))
        self.surrogate_error = float(np.median(rmse))
        self.evolution.observe(rmse)

    def _account(self, proposals: list[_Proposal], values: np.ndarray) -> None:
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
            elif prov.source == "original" and prov.path in self.paths:
                state = self.paths[prov.path]
                if np.isfinite(v) and v > state[0]:
                    state[0], state[1] = float(v), 0.0
                else:
                    state[1] += 1
                    if state[1] >= s.original_patience:  # abandon the rest of this path
                        self.queue = [q for q in self.queue if q.provenance.path != prov.path]
        self.schedule.update_sigma(sig_succ, sig_trials, s)
        n_round = self.round_size()[0]
        if self.ascent_tally[1] >= n_round:
            self.schedule.update_ascent(*self.ascent_tally, s)
            self.ascent_tally = [0, 0]

    def _to_native(self, u: np.ndarray) -> np.ndarray:
        lo, hi = self.bounds[:, 0], self.bounds[:, 1]
        return np.clip(lo + np.asarray(u) * (hi - lo), lo, hi)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k not in ("generator", "cfg", "busy", "stop_requested")}
        state["generator"] = self.generator.get_state()
        state["cfg"] = OmegaConf.to_container(self.cfg)
        state["version"] = _CHECKPOINT_VERSION
        return state

    def save(self, path: str | os.PathLike) -> None:
        """Write the whole state (pool, weights, optimizer moments, RNGs, queue) atomically to ``path``."""
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".checkpoint-")
        with os.fdopen(fd, "wb") as f:
            torch.save(self.state_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, journal: str | os.PathLike | None = None) -> "Optimizer":
        """An optimizer that continues exactly where the saved one stopped.

        Points that were asked but not told are asked again. If the optimizer kept a journal, the
        evaluations it holds beyond the checkpoint are told again (re-planning reproduces the
        proposals they answered), so nothing evaluated after the last checkpoint is lost.
        ``journal`` names the journal file when it is no longer where the saved optimizer kept it
        (a run folder that was moved).
        """
        state = torch.load(os.fspath(path), weights_only=False)
        if state.pop("version", None) != _CHECKPOINT_VERSION:
            raise ValueError(f"{path}: not a nes_ensemble checkpoint of version {_CHECKPOINT_VERSION}")
        if state.pop("kind", "optimizer") == "baseline":
            from .baselines import Baseline

            cls = Baseline
        opt = cls.__new__(cls)
        gen_state = state.pop("generator")
        cfg = state.pop("cfg")
        opt.__dict__.update(state)
        opt.cfg = make_config(cfg)
        if not hasattr(opt, "region_stall") and cls is Optimizer:  # written before regions could close
            n = max(opt.cfg.search.basins - 1, 0)
            opt.region_best, opt.region_stall = np.full(n, -np.inf), np.zeros(n, dtype=int)
        opt.generator = torch.Generator()
        opt.generator.set_state(gen_state)
        opt.busy, opt.stop_requested = False, False
        if hasattr(opt, "_restore"):  # a baseline rebuilds its engine from the pool
            opt._restore()
        opt.queue = [p for _, p in opt.pending] + opt.queue
        opt.pending = []
        if journal is not None:
            opt.journal_path = os.path.abspath(os.fspath(journal))
        if opt.journal_path is not None:
            from .pool import Journal

            opt._replay(Journal.read(opt.journal_path)[len(opt.pool):])
        return opt

    def _replay(self, rows: list[dict]) -> None:
        """Tell journal rows the checkpoint does not hold: ask (re-planning the same proposals) and tell
        each asked point that a row answers; asked points no row answers go back to the queue. Rows that
        no re-planned proposal answers (a run whose evaluations were in flight planned with fewer results
        than a replay has) are taken into the pool as they are, in journal order."""
        if not rows:
            return
        journal, self.journal_path = self.journal_path, None  # these rows are on disk already
        left = {tuple(r["unit"]): r for r in rows}
        try:
            while left and (self.queue or not self.pending):  # a plan made now could not be the one they answered
                asked = self.ask(1)[0]
                unit = self.pending[-1][1].x
                row = left.pop(tuple(float(v) for v in unit), None)
                if row is not None:
                    self.tell(asked[None], [row["y"]], [row["reason"]])
            if left:
                self._adopt([r for r in rows if tuple(r["unit"]) in left])
        finally:
            self.queue = [p for _, p in self.pending] + self.queue
            self.pending = []
            self.journal_path = journal

    def _adopt(self, rows: list[dict]) -> None:
        """Add journal rows to the pool directly, with the provenance they were evaluated with."""
        names = [f.name for f in fields(Provenance)]
        units = np.array([r["unit"] for r in rows], dtype=float)
        values = np.array([self.sign * r["y"] for r in rows], dtype=float)
        self._score_members(units, values)
        self.pool.add(units, values, [Provenance(**{k: r[k] for k in names if k in r}) for r in rows],
                      [r["reason"] for r in rows])
        self._grow_weights(len(rows), np.isfinite(values))


def optimize(fn: Callable, bounds: Sequence[Sequence[float]], budget: int = 300, seed: int | None = 0,
             strategy: str = "nes", *, batched: bool = False, direction: str = "maximize",
             callback: Callable[[Optimizer], None] | None = None, evaluator: str | Mapping[str, Any] | None = None,
             n_workers: int | None = None, **overrides: Any) -> Result:
    """Maximize (or minimize) ``fn`` over ``bounds`` with exactly ``budget`` evaluations.

    ``fn`` maps one x [n] to a float (``batched=True``: [m, n] -> [m]). Keyword ``overrides`` set
    config keys: ``ensemble={"members": 20}``, ``search__mode="original"``. ``callback(opt)`` runs
    after every round of evaluations (progress bars, tracking). ``evaluator="processes"`` or
    ``"ray"`` with ``n_workers=4`` evaluates that many points at once.
    """
    if not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget={budget!r}: must be a positive integer")
    ev = dict(evaluator) if isinstance(evaluator, Mapping) else ({"name": evaluator} if evaluator else {})
    if n_workers is not None:
        ev["n_workers"] = n_workers
    if ev:
        overrides["evaluator"] = ev
    start = time.perf_counter()
    opt = Optimizer(bounds, seed=seed, direction=direction, strategy={"name": strategy}, budget=int(budget),
                    **overrides)

    def evaluate(X: np.ndarray) -> np.ndarray:
        if batched:
            y = np.asarray(fn(X), dtype=float).reshape(-1)
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"fn returned {y.shape[0]} values for {X.shape[0]} points (batched=True)")
            return y
        return np.array([scalar(fn(x)) for x in X])  # called with one row at a time by drive

    if opt.cfg.evaluator.name == "inline":
        drive(opt, evaluate, int(budget), callback, batched=batched)
    else:
        if batched:
            raise ValueError(f"evaluator={opt.cfg.evaluator.name}: evaluates one point per worker; use batched=False")
        from .evaluators import drive_parallel

        drive_parallel(opt, fn, int(budget), callback)
    best_x, best_y = opt.best
    return Result(best_x, best_y, opt._to_native(opt.pool.x), opt.sign * opt.pool.y, opt.history(),
                  list(opt.events), time.perf_counter() - start)


class EvaluationError(RuntimeError):
    """The objective failed ``evaluator.max_failures`` times in a row; every evaluation so far is kept."""


def drive(opt: Optimizer, evaluate: Callable[[np.ndarray], np.ndarray], budget: int,
          callback: Callable[[Optimizer], None] | None = None, batched: bool = False) -> None:
    """Run the ask / evaluate / tell loop until ``budget`` evaluations are in the pool.

    ``evaluate`` maps points [m, n] to values [m] in the user's sign. Unless ``batched``, it is
    called one point at a time and each result is told at once, so a crash loses nothing evaluated
    before it. An evaluation that raises, times out (``evaluator.timeout``) or returns NaN / inf is
    told as failed with its reason and counts against the budget; ``evaluator.retries`` re-runs
    raising or timed-out ones first. After ``evaluator.max_failures`` consecutive failures the loop
    stops with ``EvaluationError``. Proposals asked beyond the budget are dropped unevaluated.
    """
    ev = opt.cfg.evaluator
    streak = 0
    while opt.n_evaluations < budget:
        with opt.bookkeeping():
            X = opt.ask()[: budget - opt.n_evaluations]
        groups = [X] if batched else [x[None] for x in X]
        for group in groups:
            if opt.stop_requested:
                opt.stop_requested = False
                raise KeyboardInterrupt
            y, reasons = _evaluate(evaluate, group, ev.timeout, ev.retries)
            with opt.bookkeeping():
                opt.tell(group, y, reasons)
            streak = failure_streak(opt, streak, y, reasons[-1])
        opt.pending.clear()
        if callback is not None:
            with opt.bookkeeping():
                callback(opt)


def failure_streak(opt: Optimizer, streak: int, y: np.ndarray, reason: str) -> int:
    """The count of consecutive failed evaluations after these values; raises EvaluationError (after
    dropping unevaluated proposals) once it reaches ``evaluator.max_failures``."""
    failed = ~np.isfinite(np.asarray(y, dtype=float))
    streak = streak + int(failed.sum()) if failed.all() else 0
    limit = opt.cfg.evaluator.max_failures
    if limit and streak >= limit:
        opt.pending.clear()
        raise EvaluationError(f"the objective failed {streak} times in a row (last: {reason}); stopping after "
                              f"{opt.n_evaluations} evaluations, all kept. Raise evaluator.max_failures "
                              "(0 = never stop) if failures are expected")
    return streak


def _evaluate(evaluate: Callable[[np.ndarray], np.ndarray], X: np.ndarray, timeout: float,
              retries: int) -> tuple[np.ndarray, list[str]]:
    """Values [m] and failure reasons of ``evaluate(X)``, catching errors and enforcing the time limit."""
    reason = ""
    for _ in range(retries + 1):
        try:
            with _time_limit(timeout):
                y = np.asarray(evaluate(X), dtype=float).reshape(-1)
        except _Timeout:
            reason = f"timed out after {timeout:g} s"
            continue
        except (KeyboardInterrupt, SystemExit, EvaluationError):
            raise
        except ValueError as err:
            if "fn returned" in str(err):  # a contract error of the user's function: say it, do not swallow it
                raise
            reason = f"{type(err).__name__}: {err}"
            continue
        except Exception as err:
            reason = f"{type(err).__name__}: {err}"
            continue
        y = np.where(np.isfinite(y), y, np.nan)
        return y, ["" if np.isfinite(v) else "non-finite value" for v in y]
    return np.full(len(X), np.nan), [reason] * len(X)


class _Timeout(Exception):
    pass


class _time_limit:
    """Raise _Timeout in the main thread after ``seconds`` (a no-op for 0 or outside the main thread)."""

    def __init__(self, seconds: float):
        self.seconds = seconds if threading.current_thread() is threading.main_thread() else 0.0

    def __enter__(self) -> None:
        if self.seconds > 0:
            def fire(signum: int, frame: Any) -> None:
                raise _Timeout()

            self.previous = signal.signal(signal.SIGALRM, fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: Any) -> None:
        if self.seconds > 0:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
