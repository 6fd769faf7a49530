"""The members and what they have learnt: population, optimizer state, sample weights and evolution.

``Ensemble`` trains the population on the pool with the strategy's trainer (back-propagation for
``nes`` and ``sgd``, evolution strategies for ``es`` and ``nes_es``), lets the population manager
run a generation when one is due (``nes``, ``nes_es``), and scores every member on each new
evaluation before it trains on it (test-then-train: the members' fitness, at no cost in
evaluations of F).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from ..engine.pool import SamplePool
from .evolution import Evolution
from .population import Population
from .targets import poisson_weights, score_targets, train_targets
from .training import OptimizerState, fit, fit_es

NETWORK_STRATEGIES = ("nes", "sgd", "es", "nes_es")


class Ensemble:
    """The population of one run and its training state; reads the pool, never writes it."""

    def __init__(self, dim: int, cfg: DictConfig, seed: int, rng: np.random.Generator, generator: torch.Generator):
        self.cfg, self.rng, self.generator = cfg, rng, generator
        self.population = Population(dim, cfg.ensemble, generator)
        self.opt_state = OptimizerState.zeros(self.population)
        self.sample_weights = np.empty((self.population.size, 0))  # [k, n] bootstrap weight of every evaluation
        self.trained_on = 0  # successful evaluations the members have been trained on
        self.surrogate_error = float("nan")  # median test-then-train error of the latest evaluations
        self.evolution = Evolution(cfg.evolution, self.population, seed)

    @property
    def evolves(self) -> bool:
        """Whether the population manager forks and merges members (strategies nes and nes_es)."""
        return self.cfg.strategy.name in ("nes", "nes_es") and self.cfg.evolution.every > 0

    @property
    def size(self) -> int:
        """The number of members."""
        return self.population.size

    def births(self) -> list[dict]:
        """The lineage events of the first members (none when nothing evolves)."""
        return self.evolution.births(self.population, 0) if self.evolves else []

    # ------------------------------------------------------------------ training
    def fit(self, pop: Population, state: OptimizerState, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor,
            steps: int) -> None:
        """Train ``pop`` with the strategy's trainer: back-propagation, or evolution strategies (es, nes_es)."""
        st, batch = self.cfg.strategy, self.cfg.ensemble.batch_size
        if st.name in ("es", "nes_es"):
            fit_es(pop, x, t, w, steps, batch, self.generator, st.es_popsize, st.es_stdev, st.es_lr)
        else:
            fit(pop, state, x, t, w, steps, batch, self.generator)

    def train(self, pool: SamplePool, every: int = 1) -> list[dict]:
        """Train on the pool when it holds at least ``every`` successful evaluations the members have not seen,
        after a generation of the population manager when one is due. Returns the generation's lineage events."""
        n_ok = int(pool.ok.sum())
        if n_ok - self.trained_on < every or n_ok == self.trained_on:
            return []
        e = self.cfg.ensemble
        steps = e.train_steps_initial if self.trained_on == 0 else e.train_steps
        x, t, w = self._data(pool)
        events = []
        if self.evolves and self.trained_on > 0 and self.evolution.due(len(pool)):
            events = self._evolve(pool, x, t, w)
        self.fit(self.population, self.opt_state, x, t, w, steps)
        self.trained_on = n_ok
        return events

    def _data(self, pool: SamplePool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Inputs, targets and per-member weights of the pool's successful evaluations."""
        ok = pool.ok
        t = train_targets(pool.y[ok], self.cfg.ensemble.y_transform)
        x = torch.tensor(pool.x[ok], dtype=torch.float32)
        w = torch.tensor(self._member_weights(pool)[:, ok], dtype=torch.float32)
        return x, torch.tensor(t, dtype=torch.float32), w

    def _member_weights(self, pool: SamplePool) -> np.ndarray:
        """Bootstrap weights, restricted to each member's window of the pool where windows are on."""
        w = self.sample_weights.copy()
        s = self.cfg.search.original
        if s.windows and self.size > 1:
            window = s.window_size or max(10, (s.rotate_every // self.size) // 10 * 10)
            w = w * pool.window_weights(self.size, window, len(pool) // max(1, s.rotate_every))
        dead = w.sum(1) == 0
        w[dead] = pool.ok.astype(float)  # a member whose draw missed everything sees all
        return w

    def _evolve(self, pool: SamplePool, x: torch.Tensor, t: torch.Tensor, w: torch.Tensor) -> list[dict]:
        """One generation of the population manager. The forks train on what the members have seen and
        are judged on the evaluations no member has trained on yet (the newest ones)."""
        old = self.trained_on

        def draw(n: int) -> torch.Tensor:
            rows = poisson_weights(self.rng, (n, old))
            rows[rows.sum(1) == 0] = 1.0
            return torch.tensor(rows, dtype=torch.float32)

        events = self.evolution.step(self.population, self.opt_state, (x[:old], t[:old], w[:, :old]),
                                     (x[old:], t[old:]), len(pool), draw, self.fit)
        for ev in events:
            if ev["event"] == "replace":  # the newcomer draws its own bootstrap weights
                i = self.population.ids.index(ev["id"])
                self.sample_weights[i] = poisson_weights(self.rng, len(pool)) * pool.ok
        return events

    # ------------------------------------------------------------------ new evaluations
    def observe(self, pool: SamplePool, start: int) -> None:
        """Take in the pool's rows from ``start`` on: score the members on them (test-then-train), then give
        every member its bootstrap weights for them (zero for failed evaluations, which are never trained on)."""
        values = pool.y[start:]
        ok = np.isfinite(values)
        if self.trained_on > 0 and ok.any():
            before = pool.y[:start]
            target = score_targets(values[ok], before[np.isfinite(before)], self.cfg.ensemble.y_transform)
            x = torch.tensor(pool.x[start:][ok], dtype=torch.float32)
            with torch.no_grad():
                pred = self.population.forward(x.unsqueeze(0).expand(self.size, -1, -1)).numpy()
            rmse = np.sqrt(((pred - target[None, :]) ** 2).mean(1))
            self.surrogate_error = float(np.median(rmse))
            self.evolution.observe(rmse)
        k, n = self.size, len(values)
        new = poisson_weights(self.rng, (k, n)) if self.cfg.ensemble.bootstrap and k > 1 else np.ones((k, n))
        self.sample_weights = np.concatenate([self.sample_weights, new * ok[None, :]], axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The members' mean prediction at x [m, d] (on the scale of their targets)."""
        xt = torch.tensor(x, dtype=torch.float32)
        with torch.no_grad():
            return self.population.forward(xt.unsqueeze(0).expand(self.size, -1, -1)).mean(0).numpy()

    def diversity(self, pool: SamplePool) -> float:
        """How much the members disagree: the mean standard deviation of their predictions on the newest 100 points."""
        if self.trained_on == 0 or self.size < 2:
            return float("nan")
        x = torch.tensor(pool.x[-100:], dtype=torch.float32)
        with torch.no_grad():
            pred = self.population.forward(x.unsqueeze(0).expand(self.size, -1, -1))
        return float(pred.std(0).mean())

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Weights, optimizer moments, sample weights and evolution state as tensors and plain values."""
        return {"population": self.population.state_dict(), "opt_state": self.opt_state.state_dict(),
                "sample_weights": torch.from_numpy(self.sample_weights.copy()), "trained_on": self.trained_on,
                "surrogate_error": self.surrogate_error, "evolution": self.evolution.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.population = Population.from_state(state["population"])
        self.opt_state = OptimizerState(**{k: v.clone() for k, v in state["opt_state"].items()})
        self.sample_weights = state["sample_weights"].numpy().copy()
        self.trained_on = int(state["trained_on"])
        self.surrogate_error = float(state["surrogate_error"])
        self.evolution.load_state_dict(state["evolution"])
