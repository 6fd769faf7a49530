"""Members that know where they do not know: Gaussian-process members for the first evaluations.

A random-feature network (a fixed random cosine layer whose frequencies follow a kernel's spectral
density, and a Bayesian linear last layer) is an approximate Gaussian process; as its width grows it
becomes the process itself. With the few points of a short run that limit is also the cheapest to
compute exactly, so these members are that limit: Gaussian processes with a Matern-5/2 kernel,
automatic relevance determination (a length scale per dimension), a kernel scale and a noise
variance, fitted by maximum a posteriori (the log marginal likelihood plus weak priors). Their
predictive spread grows away from the data and shrinks at it, which is what expected improvement
needs to decide between exploring and exploiting.

Members are vectorized like the population: k members, each with its own hyper-parameters and its
own bootstrap weights of the pool (a weight w scales a point's noise by 1 / w, so w = 0 leaves it
out and w = 2 counts it twice); with one member there is no bootstrap.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .targets import standardized, warp_scores, warped

MIN_NOISE = 1e-6  # of the standardized targets: a floor that keeps the kernel matrix well conditioned
_BOUNDS = {"log_inv_sq_scale": (-12.0, 12.0), "log_scale": (-8.0, 8.0), "log_noise": (-16.0, 2.0)}
FAMILIES = ("matern52", "matern32", "rbf")  # kernel families a member may have (its ``family`` gene)
GENES = ("warp", "prior", "floor", "family")  # what makes members differ besides their fitted hyper-parameters


def matern52(sq_dist: torch.Tensor) -> torch.Tensor:
    """The Matern-5/2 kernel of squared scaled distances (1 + sqrt5 r + 5/3 r^2) exp(-sqrt5 r)."""
    r5 = torch.sqrt(5.0 * sq_dist.clamp_min(1e-30))
    return (1.0 + r5 + (5.0 / 3.0) * sq_dist) * torch.exp(-r5)


def matern32(sq_dist: torch.Tensor) -> torch.Tensor:
    """The Matern-3/2 kernel (1 + sqrt3 r) exp(-sqrt3 r): rougher functions than Matern-5/2."""
    r3 = torch.sqrt(3.0 * sq_dist.clamp_min(1e-30))
    return (1.0 + r3) * torch.exp(-r3)


def rbf(sq_dist: torch.Tensor) -> torch.Tensor:
    """The squared-exponential kernel exp(-r^2 / 2): smooth functions."""
    return torch.exp(-0.5 * sq_dist)


_KERNELS = (matern52, matern32, rbf)


class KernelMembers:
    """k Gaussian-process members over the unit cube, vectorized (float64).

    Besides the hyper-parameters fitted to the pool, each member carries genes that evolution may
    change (``fork``, ``merge``): ``warp``, the power of the output warp of its targets (1: the values
    standardized; towards 0: the gap to the best on a log scale, for values that span orders of
    magnitude, ``targets.warped``), ``prior``, the strength of the prior that keeps inverse squared
    length scales near 1, ``floor``, the noise floor, and ``family``, the kernel (``FAMILIES``).
    """

    def __init__(self, dim: int, members: int):
        self.dim, self.size = dim, members
        self.log_inv_sq_scale = torch.zeros(members, dim, dtype=torch.float64)  # log 1 / l^2 per dimension
        self.log_scale = torch.zeros(members, dtype=torch.float64)  # log kernel scale
        self.log_noise = torch.zeros(members, dtype=torch.float64)  # log noise variance (above the floor)
        self.warp = torch.ones(members, dtype=torch.float64)
        self.prior = torch.full((members,), 0.1, dtype=torch.float64)
        self.floor = torch.full((members,), MIN_NOISE, dtype=torch.float64)
        self.family = torch.zeros(members, dtype=torch.long)
        self._x = torch.empty(0, dim, dtype=torch.float64)
        self._chol: torch.Tensor | None = None  # [k, n, n]
        self._alpha: torch.Tensor | None = None  # [k, n]

    @property
    def fitted(self) -> bool:
        """Whether the members have been conditioned on data (and can predict)."""
        return self._chol is not None

    _FIELDS = ("log_inv_sq_scale", "log_scale", "log_noise", "warp", "prior", "floor", "family")

    def subset(self, index: torch.Tensor) -> "KernelMembers":
        """Copies of the members ``index`` (repeats allowed, e.g. for forks), not yet conditioned on data."""
        out = KernelMembers(self.dim, len(index))
        for name in self._FIELDS:
            setattr(out, name, getattr(self, name)[index].clone())
        return out

    def targets(self, values: np.ndarray) -> np.ndarray:
        """Each member's targets [k, n] from the successful values [n]: warped by its ``warp``, standardized."""
        out = np.empty((self.size, len(values)))
        for power in torch.unique(self.warp).tolist():  # few distinct warps: members share the work
            rows = (self.warp == power).numpy()
            out[rows] = standardized(values) if power == 1.0 else standardized(warped(values, power))
        return out

    # ------------------------------------------------------------------ the model
    def kernel(self, a: torch.Tensor, b: torch.Tensor, log_inv_sq_scale: torch.Tensor | None = None,
               log_scale: torch.Tensor | None = None) -> torch.Tensor:
        """k(a, b) [k, n, n'] for a [k, n, d] or [n, d] (b likewise), each member with its own parameters."""
        lam = torch.exp(self.log_inv_sq_scale if log_inv_sq_scale is None else log_inv_sq_scale)
        scale = torch.exp(self.log_scale if log_scale is None else log_scale)
        if a.dim() == 2:
            a = a.unsqueeze(0)
        if b.dim() == 2:
            b = b.unsqueeze(0)
        sq = (a.unsqueeze(-2) - b.unsqueeze(-3)).square()  # [k or 1, n, n', d]
        dist = (sq * lam[:, None, None, :]).sum(-1)
        if not bool(self.family.any()):
            return scale[:, None, None] * matern52(dist)
        k = torch.zeros_like(dist)
        for f in torch.unique(self.family).tolist():
            k = torch.where((self.family == f)[:, None, None], _KERNELS[f](dist), k)
        return scale[:, None, None] * k

    def _covariance(self, x: torch.Tensor, weights: torch.Tensor, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        log_lam, log_scale, log_noise = params
        noise = torch.exp(log_noise) + self.floor
        K = self.kernel(x, x, log_lam, log_scale)
        diag = noise[:, None] / weights.clamp_min(1e-9)
        return K + torch.diag_embed(diag)

    def neg_log_posterior(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor,
                          params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Each member's negative log marginal likelihood plus log priors [k] (weights [k, n] as in ``fit``).

        The priors, on the standardized targets: inverse squared length scales near 1 (a penalty of strength
        ``prior`` on both very short and very long scales), a Gamma(2, 1) kernel scale, a Gamma(1.1, 30) noise.
        ``y`` is [n] (every member's targets) or [k, n] (each member's own)."""
        log_lam, log_scale, log_noise = params
        L = torch.linalg.cholesky(self._covariance(x, weights, params))
        u = torch.linalg.solve_triangular(L, y.expand(self.size, -1).unsqueeze(-1), upper=False).squeeze(-1)
        nll = 0.5 * (u * u).sum(1) + torch.log(torch.diagonal(L, dim1=1, dim2=2)).sum(1)
        lam, scale, noise = torch.exp(log_lam), torch.exp(log_scale), torch.exp(log_noise) + self.floor
        a = self.prior[:, None]
        length = (a * torch.reciprocal(lam) + a * lam).sum(1)  # (a tensor's a / lam rounds otherwise than 0.1 / lam)
        prior = length + (scale - torch.log(scale)) + (30.0 * noise - 0.1 * torch.log(noise))
        return nll + prior

    def fit(self, x: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None, max_iter: int = 60) -> None:
        """Fit every member's hyper-parameters to (x [n, d], y [n] or [k, n], standardized) from where they are (a warm
        start), by L-BFGS on the members' summed (independent) losses; then condition on the data."""
        xt = torch.as_tensor(x, dtype=torch.float64)
        yt = torch.as_tensor(y, dtype=torch.float64)
        wt = torch.ones(self.size, y.shape[-1], dtype=torch.float64) if weights is None else torch.as_tensor(
            weights, dtype=torch.float64)
        params = [p.clone().requires_grad_(True) for p in (self.log_inv_sq_scale, self.log_scale, self.log_noise)]
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-4, tolerance_change=1e-9)

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = self.neg_log_posterior(xt, yt, wt, tuple(self._clamped(params))).sum()
            loss.backward()
            return loss

        try:
            opt.step(closure)
            fitted = [p.detach() for p in self._clamped(params)]
            if not all(torch.isfinite(p).all() for p in fitted):
                raise RuntimeError("non-finite hyper-parameters")
            self.log_inv_sq_scale, self.log_scale, self.log_noise = fitted
        except (RuntimeError, torch.linalg.LinAlgError):  # a failed fit keeps the previous hyper-parameters
            pass
        self.condition(xt, yt, wt)

    @staticmethod
    def _clamped(params: list[torch.Tensor]) -> list[torch.Tensor]:
        return [p.clamp(*b) for p, b in zip(params, _BOUNDS.values())]

    def condition(self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor) -> None:
        """The posterior given data, with the hyper-parameters as they are (no fit)."""
        with torch.no_grad():
            params = (self.log_inv_sq_scale, self.log_scale, self.log_noise)
            L = torch.linalg.cholesky(self._covariance(x, weights, params))
            self._x, self._chol = x, L
            self._alpha = torch.cholesky_solve(y.expand(self.size, -1).unsqueeze(-1), L).squeeze(-1)

    def predict(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each member's posterior mean and variance of f at x [k, S, d] or [S, d]: ([k, S], [k, S])."""
        assert self._chol is not None, "fit first"
        cross = self.kernel(x.double(), self._x)  # [k, S, n]
        mean = (cross @ self._alpha.unsqueeze(-1)).squeeze(-1)
        v = torch.linalg.solve_triangular(self._chol, cross.transpose(1, 2), upper=False)
        var = torch.exp(self.log_scale)[:, None] - (v * v).sum(1)
        return mean, var.clamp_min(1e-12)

    def log_density(self, x: np.ndarray, values: np.ndarray, reference: np.ndarray) -> torch.Tensor:
        """Each member's log predictive density of each new value of ``values`` at ``x`` [m, d] (observation noise
        included), in the units of the values, for members conditioned on the ``reference`` values: [k, m]. Members
        that warp their targets differently are compared on one scale (the warp's Jacobian is part of the
        density)."""
        mean, var = self.predict(torch.as_tensor(x, dtype=torch.float64))
        var = var + (torch.exp(self.log_noise) + self.floor)[:, None]
        out = torch.empty(self.size, len(values), dtype=torch.float64)
        for power in torch.unique(self.warp).tolist():
            rows = self.warp == power
            t, log_slope = (torch.as_tensor(a) for a in warp_scores(values, reference, power))
            v = var[rows]
            out[rows] = -0.5 * torch.log(2 * math.pi * v) - 0.5 * (t - mean[rows]).square() / v + log_slope
        return out

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One joint posterior sample of f per member at x [S, d]: [k, S] (a function drawn from the posterior,
        seen at S points; Thompson sampling climbs such a draw)."""
        assert self._chol is not None, "fit first"
        x = x.double()
        mean, _ = self.predict(x)
        cross = self.kernel(x, self._x)  # [k, S, n]
        v = torch.linalg.solve_triangular(self._chol, cross.transpose(1, 2), upper=False)  # [k, n, S]
        cov = self.kernel(x, x) - v.transpose(1, 2) @ v
        cov = 0.5 * (cov + cov.transpose(1, 2)) + 1e-9 * torch.eye(len(x), dtype=torch.float64)
        z = torch.randn(self.size, len(x), 1, dtype=torch.float64, generator=generator)
        return mean + (torch.linalg.cholesky(cov) @ z).squeeze(-1)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The hyper-parameters (the posterior is recomputed from the pool)."""
        return {name: getattr(self, name).clone() for name in self._FIELDS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (a checkpoint of before the genes has the default ones)."""
        for name in self._FIELDS:
            if name in state:
                if state[name].is_floating_point() and not torch.isfinite(state[name]).all():
                    raise ValueError(f"the Gaussian-process members' {name} is not finite")
                setattr(self, name, state[name].clone())
        if len(self.family) and not ((self.family >= 0) & (self.family < len(FAMILIES))).all():
            raise ValueError(f"the Gaussian-process members' family {self.family.tolist()} names no kernel")
        self.size = len(self.log_scale)


def log_expected_improvement(mean: torch.Tensor, var: torch.Tensor, best: float | torch.Tensor) -> torch.Tensor:
    """log E[max(f - best, 0)] for f ~ N(mean, var), accurate far into the tail (where EI underflows)."""
    sd = var.sqrt()
    return torch.log(sd) + _log_h((mean - best) / sd)


def _log_h(z: torch.Tensor) -> torch.Tensor:
    """log(phi(z) + z Phi(z)), the standardized expected improvement."""
    log_phi = -0.5 * z * z - 0.5 * math.log(2 * math.pi)
    cdf = 0.5 * torch.erfc(-z / math.sqrt(2.0))
    direct = torch.log((torch.exp(log_phi) + z * cdf).clamp_min(1e-300))
    # z << 0: h(z) = phi(z) / z^2 (1 - 3 / z^2 + 15 / z^4 - ...)
    zz = torch.minimum(z, torch.full_like(z, -1.0))
    tail = log_phi - 2 * torch.log(-zz) + torch.log1p(-3.0 / zz ** 2 + 15.0 / zz ** 4)
    return torch.where(z > -6.0, direct, tail)


def mixture_log_ei(members: KernelMembers, x: torch.Tensor, best: float | torch.Tensor) -> torch.Tensor:
    """log of the members' mean expected improvement at x [S, d] (model averaging over members): [S]. ``best`` is
    the incumbent, one for all members or [k], each member's on its own targets."""
    mean, var = members.predict(x)
    if isinstance(best, torch.Tensor):
        best = best[:, None]
    return torch.logsumexp(log_expected_improvement(mean, var, best), 0) - math.log(members.size)
