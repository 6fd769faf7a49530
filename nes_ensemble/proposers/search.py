"""Turn the networks into proposals: space-filling start, ascents from siblings' maxima, Gaussian steps.

Everything here works in the unit cube. ``ascend`` runs gradient ascent of every member on its own
surrogate from many starts (all member x start pairs in one autograd computation); ``Schedule``
keeps the two quantities that adapt to measured success: the number of ascent steps and the
Gaussian step size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize
from scipy.stats import qmc

from ..config import OriginalConfig, SearchConfig
from ..members.population import Population, forward_views, layer_runs


def initial_design(n: int, dim: int, kind: str, seed: int) -> np.ndarray:
    """n space-filling points in [0, 1]^dim: scrambled Sobol, Latin hypercube, or uniform random."""
    if kind == "sobol":
        sampler = qmc.Sobol(dim, scramble=True, seed=seed)
        m = int(np.ceil(np.log2(max(n, 1))))
        return sampler.random_base2(m)[:n]
    if kind == "lhs":
        return qmc.LatinHypercube(dim, seed=seed).random(n)
    return np.random.default_rng(seed).random((n, dim))


def ascend(pop: Population, starts: torch.Tensor, steps: int, lr: float, low: torch.Tensor | float = 0.0,
           high: torch.Tensor | float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient ascent of member r on its own surrogate from starts[r] ([k, S, d]); stays in the cube,
    or in the boxes [low, high] (broadcast against starts) where a start must stay near where it began.

    Adam on x (sign-like steps of about ``lr``), so flat and steep surrogates move at the same pace.
    Returns the end points [k, S, d] and each member's prediction there [k, S].
    """
    x = starts.clone()
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    views = pop.layout.views((pop.theta * pop.mask).detach())
    runs = layer_runs(pop.act, pop.act_names, pop.gates())  # once, not at every step

    def predict(z: torch.Tensor) -> torch.Tensor:
        return forward_views(pop.layout, views, z, runs)

    for t in range(1, steps + 1):
        x.requires_grad_(True)
        (g,) = torch.autograd.grad(predict(x).sum(), x)
        with torch.no_grad():
            m.mul_(0.9).add_(0.1 * g)
            v.mul_(0.999).add_(0.001 * g * g)
            step = lr * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-12)
            x = torch.clamp(x.detach() + step, low, high)
    with torch.no_grad():
        return x, predict(x)


@dataclass
class Schedule:
    """Adaptive quantities of the search, as plain numbers (so a checkpoint is just this value).

    ``steps``: ascent steps per ascent; multiplied by ``shrink`` after a round in which the networks
    earned trust (at least ``success_target`` of the ascent proposals improved on their start
    point) and divided by it otherwise, within [steps_min, steps_max]: trusted networks make short,
    precise moves from the siblings' maxima, untrusted ones search further afield.
    ``sigma``: Gaussian step, the 1/5 success rule (grow on success, shrink slowly on failure).
    """

    steps: float
    sigma: float
    success_rate: float = 0.0

    @classmethod
    def start(cls, cfg: SearchConfig) -> "Schedule":
        """The schedule of an untrusted population: the most ascent steps, the initial Gaussian step."""
        return cls(float(cfg.ascent.steps_max), cfg.sigma_init)

    def update_ascent(self, successes: int, trials: int, cfg: SearchConfig) -> None:
        """Fewer ascent steps after a round whose ascents mostly improved on their starts, more otherwise."""
        if trials == 0:
            return
        self.success_rate = successes / trials
        factor = cfg.ascent.shrink if self.success_rate >= cfg.ascent.success_target else 1 / cfg.ascent.shrink
        self.steps = float(np.clip(self.steps * factor, cfg.ascent.steps_min, cfg.ascent.steps_max))

    def update_sigma(self, successes: int, trials: int, cfg: SearchConfig) -> None:
        """The 1/5 success rule, one factor per Gaussian trial."""
        for i in range(trials):
            self.sigma *= 2.0 if i < successes else 2.0 ** -0.25
        self.sigma = float(np.clip(self.sigma, cfg.sigma_min, cfg.sigma_max))


def gaussian(centers: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """One Gaussian sample around each center [c, d], reflected back into the unit cube."""
    return reflect(centers + sigma * rng.standard_normal(centers.shape))


def reflect(x: np.ndarray) -> np.ndarray:
    """Points reflected at 0 and 1 into the unit cube (rather than clipped, so samples do not pile up on faces)."""
    return np.clip(1 - np.abs(1 - np.abs(x)), 0.0, 1.0)


def distinct(candidates: np.ndarray, taken: np.ndarray, min_distance: float) -> np.ndarray:
    """Mask of candidates [c, d] farther than ``min_distance`` from every row of ``taken`` [t, d]."""
    if taken.shape[0] == 0:
        return np.ones(candidates.shape[0], dtype=bool)
    d = np.sqrt(((candidates[:, None, :] - taken[None, :, :]) ** 2).sum(-1)).min(1)
    return d > min_distance


def original_paths(pop: Population, starts: torch.Tensor, cfg: OriginalConfig) -> torch.Tensor:
    """The Go benchmark's ascent: ``cfg.steps`` fixed-size steps along each member's gradient.

    starts [k, S, d] -> paths [k, S, steps, d]; every point on a path is meant to be evaluated,
    and a path is abandoned after ``cfg.patience`` steps without improvement (the optimizer
    does that as results come back). Points that leave the cube end their path (NaN after it).
    """
    views = pop.layout.views((pop.theta * pop.mask).detach())
    runs = layer_runs(pop.act, pop.act_names, pop.gates())

    x = starts.clone()
    path = []
    alive = torch.ones(starts.shape[:2], dtype=torch.bool)
    for _ in range(cfg.steps):
        x.requires_grad_(True)
        pred = forward_views(pop.layout, views, x, runs)
        (g,) = torch.autograd.grad(pred.sum(), x)
        with torch.no_grad():
            x = x.detach() + cfg.step_size * g / (g.norm(dim=-1, keepdim=True) + 1e-12)
            alive &= ((x >= 0) & (x <= 1)).all(-1)
            path.append(torch.where(alive[..., None], x, torch.full_like(x, float("nan"))))
    return torch.stack(path, dim=2)


def quadratic_step(X: np.ndarray, y: np.ndarray, center: np.ndarray, min_fit: float = 0.99) -> np.ndarray | None:
    """Maximize a quadratic fitted to the points nearest ``center`` inside their own neighbourhood box.

    X [n, d] (unit cube) and y [n] are finite evaluations. The fit uses the 2 (d + 1)(d + 2) / 2
    nearest points; its maximizer within the box they span (and the cube) is returned, or None when
    there are too few points or the quadratic explains less than ``min_fit`` of their variance (noise,
    or a landscape rougher than a quadratic at that scale: a Newton step would chase it). As the pool
    gathers around the best point the box shrinks, so the step polishes far below the resolution of
    the networks: a Newton step on the evaluations themselves.
    """
    d = X.shape[1]
    terms = (d + 1) * (d + 2) // 2
    if len(y) < 2 * terms:
        return None
    dist = np.linalg.norm(X - center, axis=1)
    near = np.argsort(dist, kind="stable")[: 2 * terms]
    scale = float(dist[near].max())
    if scale <= 1e-12:
        return None
    z = (X[near] - center) / scale  # the neighbourhood in [-1, 1]^d, whatever its size
    t = y[near]
    with np.errstate(over="ignore", invalid="ignore"):
        t = (t - t.mean()) / (t.std() + 1e-300)
    if not np.isfinite(t).all():
        return None
    iu = np.triu_indices(d)

    def features(u: np.ndarray) -> np.ndarray:
        return np.concatenate([np.ones((len(u), 1)), u, u[:, iu[0]] * u[:, iu[1]]], axis=1)

    F = features(z)
    coef = np.linalg.lstsq(F, t, rcond=None)[0]
    if float(((F @ coef - t) ** 2).mean()) > 1.0 - min_fit:  # t has unit variance: 1 - R^2 of the fit
        return None
    g = coef[1:d + 1]
    H = np.zeros((d, d))
    H[iu] = coef[d + 1:]
    H = H + H.T  # u^T H u / 2 equals the fitted cross terms: off-diagonals once each, squares twice

    def negative(u: np.ndarray) -> tuple[float, np.ndarray]:
        return -float(g @ u + 0.5 * u @ H @ u), -(g + H @ u)

    lo = np.maximum(-1.0, -center / scale)
    hi = np.minimum(1.0, (1 - center) / scale)
    res = minimize(negative, np.zeros(d), jac=True, method="L-BFGS-B", bounds=list(zip(lo, hi)),
                   options={"ftol": 1e-15, "gtol": 1e-12})
    return np.clip(center + scale * res.x, 0.0, 1.0)
