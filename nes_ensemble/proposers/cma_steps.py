"""A CMA-ES whose generations are the search's rounds: the refinements sample it, every proposal teaches it.

The networks' ascents find where the landscape rises; on a rugged one (Ackley, Levy) their end points
and any Gaussian step around the best point settle in the nearest ripple. A covariance-matrix
adaptation evolution strategy (Hansen, "The CMA Evolution Strategy: A Tutorial", 2016) averages over
the ripples instead: its mean moves to the weighted mean of the better half of each generation, and
its step size and covariance follow the path that mean takes. Here a generation is a round's worth of
evaluations; the refinements are its samples, one is its mean, and the ascents' end points (and the
polishing step) enter it as external solutions, clipped to the length of a typical sample (Hansen,
"Injecting External Solutions Into CMA-ES", 2011), so the networks steer the mean and the strategy
smooths what they find.

Written out rather than taken from pycma: its state must be plain arrays for the checkpoint (loaded
without pickled code), and its samples must come from the run's own generator (pycma draws from
numpy's global one), so that a resumed run continues exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .search import reflect


class CMASteps:
    """A (mu/mu_w, lambda) CMA-ES in the unit cube with rank-one and rank-mu updates and cumulative step size.

    ``ask`` draws samples (reflected into the cube); ``tell`` takes any points with their values (maximized)
    and updates once a generation of ``popsize`` is in. Points far from the mean count as a sample of the
    typical length in their direction, so an external point steers the mean without inflating the step.
    """

    def __init__(self, dim: int, popsize: int, mean: np.ndarray, sigma: float):
        n, lam = dim, max(2, popsize)
        self.dim, self.popsize = n, lam
        mu = lam // 2
        w = np.log((lam + 1) / 2) - np.log(np.arange(1, mu + 1))
        self.weights = w / w.sum()
        self.mu_eff = 1.0 / float((self.weights ** 2).sum())
        me = self.mu_eff
        self.c_sigma = (me + 2) / (n + me + 5)
        self.d_sigma = 1 + 2 * max(0.0, np.sqrt((me - 1) / (n + 1)) - 1) + self.c_sigma
        self.c_c = (4 + me / n) / (n + 4 + 2 * me / n)
        self.c_1 = 2 / ((n + 1.3) ** 2 + me)
        self.c_mu = min(1 - self.c_1, 2 * (me - 2 + 1 / me) / ((n + 2) ** 2 + me))
        self.chi_n = np.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n))  # E ||N(0, I)||
        self.clip_length = np.sqrt(n) + 2 * n / (n + 2)  # the longest step a told point may stand for
        self.mean = np.asarray(mean, dtype=float).copy()
        self.sigma = float(sigma)
        self.C = np.eye(n)
        self.p_sigma = np.zeros(n)
        self.p_c = np.zeros(n)
        self.generation = 0
        self.told_x = np.empty((0, n))  # the generation being gathered
        self.told_y = np.empty(0)
        self._decompose()

    def _decompose(self) -> None:
        values, self.B = np.linalg.eigh(self.C)
        self.D = np.sqrt(np.maximum(values, 1e-14 * max(float(values.max()), 1e-300)))  # condition <= 1e14

    def ask(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n samples [n, d] of N(mean, sigma^2 C), reflected back into the unit cube."""
        z = rng.standard_normal((n, self.dim))
        return reflect(self.mean + self.sigma * (z * self.D) @ self.B.T)

    def tell(self, x: np.ndarray, y: np.ndarray) -> None:
        """Points [m, d] and their values [m] (NaN for a failure: ranked last); a generation updates the strategy."""
        self.told_x = np.concatenate([self.told_x, np.asarray(x, dtype=float).reshape(-1, self.dim)])
        self.told_y = np.concatenate([self.told_y, np.asarray(y, dtype=float).reshape(-1)])
        while len(self.told_y) >= self.popsize:
            gx, gy = self.told_x[: self.popsize], self.told_y[: self.popsize]
            self.told_x, self.told_y = self.told_x[self.popsize:], self.told_y[self.popsize:]
            self._update(gx, gy)

    def _update(self, x: np.ndarray, y: np.ndarray) -> None:
        n = self.dim
        steps = (x - self.mean) / self.sigma
        inv_sqrt = (self.B / self.D) @ self.B.T  # C^(-1/2)
        length = np.linalg.norm(steps @ inv_sqrt.T, axis=1)
        steps *= np.minimum(1.0, self.clip_length / np.maximum(length, 1e-300))[:, None]
        order = np.argsort(-np.where(np.isfinite(y), y, -np.inf), kind="stable")[: len(self.weights)]
        best = steps[order]
        step = self.weights @ best
        self.mean = self.mean + self.sigma * step
        self.generation += 1
        self.p_sigma = (1 - self.c_sigma) * self.p_sigma + np.sqrt(
            self.c_sigma * (2 - self.c_sigma) * self.mu_eff) * (inv_sqrt @ step)
        norm = float(np.linalg.norm(self.p_sigma))
        h = norm / np.sqrt(1 - (1 - self.c_sigma) ** (2 * self.generation)) < (1.4 + 2 / (n + 1)) * self.chi_n
        self.p_c = (1 - self.c_c) * self.p_c + h * np.sqrt(self.c_c * (2 - self.c_c) * self.mu_eff) * step
        rank_mu = (best * self.weights[:, None]).T @ best
        decay = 1 - self.c_1 - self.c_mu + (1 - h) * self.c_1 * self.c_c * (2 - self.c_c)
        self.C = decay * self.C + self.c_1 * np.outer(self.p_c, self.p_c) + self.c_mu * rank_mu
        self.C = (self.C + self.C.T) / 2
        self.sigma = float(np.clip(self.sigma * np.exp(self.c_sigma / self.d_sigma * (norm / self.chi_n - 1)),
                                   1e-8, 1.0))
        self._decompose()

    def state_dict(self) -> dict[str, Any]:
        """The strategy as tensors and numbers (for checkpoints)."""
        t = torch.from_numpy
        return {"popsize": self.popsize, "mean": t(self.mean.copy()), "sigma": self.sigma, "C": t(self.C.copy()),
                "p_sigma": t(self.p_sigma.copy()), "p_c": t(self.p_c.copy()), "generation": self.generation,
                "told_x": t(self.told_x.copy()), "told_y": t(self.told_y.copy())}

    @classmethod
    def from_state(cls, dim: int, state: dict[str, Any]) -> "CMASteps":
        """The strategy ``state_dict`` saved."""
        es = cls(dim, int(state["popsize"]), np.zeros(dim), 1.0)
        es.load_state_dict(state)
        return es

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.mean, self.C = state["mean"].numpy().copy(), state["C"].numpy().copy()
        self.p_sigma, self.p_c = state["p_sigma"].numpy().copy(), state["p_c"].numpy().copy()
        self.sigma, self.generation = float(state["sigma"]), int(state["generation"])
        self.told_x = state["told_x"].numpy().reshape(-1, self.dim).copy()
        self.told_y = state["told_y"].numpy().copy()
        self._decompose()
