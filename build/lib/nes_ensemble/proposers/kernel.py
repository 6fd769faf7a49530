"""The first evaluations after the design: proposals that maximize the kernel members' expected improvement.

While the pool is small (``search.kernel.until`` successful evaluations), the network proposers ask
the Gaussian-process members of ``kernel_members`` instead of the networks: fit them to the pool,
then climb the members' mean expected improvement from many starts (the best of a scrambled Sobol
sample of candidates, and the best point so far) and propose its maximizer. Several proposals in a
round, or points still being evaluated, are handled by fantasy: each chosen or pending point joins
the members' data at their predicted mean (the kriging believer), so the next maximizer looks
elsewhere. After the phase the networks take over with everything the pool holds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from scipy.stats import qmc

from ..kernel_members import KernelMembers, mixture_log_ei
from ..ledger import Ledger, Proposal
from ..pool import Provenance
from ..targets import poisson_weights, standardized, train_targets


class KernelSearch:
    """Expected-improvement proposals from ``search.kernel.members`` Gaussian-process members."""

    def __init__(self, dim: int, cfg: DictConfig, seed: int, rng: np.random.Generator, space: Any = None):
        self.cfg, self.dim, self.seed, self.rng = cfg, dim, seed, rng
        self.space = space  # a named Space: candidates and the climbed points are judged as the settings they are
        self.members = KernelMembers(dim, cfg.members)
        self.fits = 0  # fits so far: each round draws a fresh set of candidates

    def active(self, ledger: Ledger) -> bool:
        """Whether the phase still proposes: the pool holds fewer than ``until`` successful evaluations."""
        return int(ledger.pool.ok.sum()) < self.cfg.until

    def plan(self, ledger: Ledger, n: int, round: int) -> list[Proposal]:
        """``n`` proposals: fit the members, then in turn maximize expected improvement and fantasize the point."""
        pool = ledger.pool
        ok = pool.ok
        x = pool.x[ok]
        y = train_targets(pool.y[ok], self.cfg.y_transform)
        y = standardized(y)  # rank scores have a spread below 1
        k = self.members.size
        weights = None
        if k > 1:  # each member on its own bootstrap of the pool
            weights = poisson_weights(self.rng, (k, len(y)))
            weights[weights.sum(1) == 0] = 1.0
        self.members.fit(x, y, weights)
        self.fits += 1
        best = float(y.max())
        data = (torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64),
                torch.ones(k, len(y), dtype=torch.float64) if weights is None else torch.as_tensor(weights))
        pending = [p.x for _, p in ledger.pending]
        if pending:  # points being evaluated: believe the model there
            data, best = self._fantasize(np.stack(pending), data, best)
        out = []
        for _ in range(n):
            xq, value = self._maximize(best, x[int(np.argmax(y))])
            out.append(Proposal(xq, Provenance("kernel", round=round, predicted=value,
                                               reference=float(pool.y[pool.best_index()]))))
            if len(out) < n:
                data, best = self._fantasize(xq[None], data, best)
        return out

    def _fantasize(self, xs: np.ndarray, data: tuple[torch.Tensor, ...], best: float) -> tuple[tuple, float]:
        """Condition the members on xs observed without noise at their predicted mean (the kriging believer),
        so that expected improvement vanishes there; the incumbent rises with them."""
        data_x, data_y, data_w = data
        xt = torch.as_tensor(xs, dtype=torch.float64)
        with torch.no_grad():
            mean = self.members.predict(xt)[0].mean(0)
        data = (torch.cat([data_x, xt]), torch.cat([data_y, mean]),
                torch.cat([data_w, torch.full((self.members.size, len(xs)), 1e6, dtype=torch.float64)], 1))
        self.members.condition(*data)
        return data, max(best, float(mean.max()))

    def _maximize(self, best: float, incumbent: np.ndarray) -> tuple[np.ndarray, float]:
        """The maximizer of the mixture log EI: the best of ``candidates`` Sobol points and of the incumbent,
        each climbed by Adam with a step that shrinks from 0.05 to 1e-4 (in the unit cube)."""
        cfg = self.cfg
        raw = qmc.Sobol(self.dim, scramble=True, seed=self.seed + 7727 * self.fits).random(cfg.candidates)
        if self.space is not None:
            raw = self.space.snap(raw)
        with torch.no_grad():
            score = mixture_log_ei(self.members, torch.as_tensor(raw), best)
        top = raw[torch.argsort(score, descending=True)[: cfg.starts - 1].numpy()]
        x = torch.as_tensor(np.vstack([top, incumbent[None]]), dtype=torch.float64)
        m, v = torch.zeros_like(x), torch.zeros_like(x)
        steps = cfg.ascent_steps
        for t in range(1, steps + 1):
            x.requires_grad_(True)
            (g,) = torch.autograd.grad(mixture_log_ei(self.members, x, best).sum(), x)
            lr = 0.05 * (1e-4 / 0.05) ** ((t - 1) / max(steps - 1, 1))
            with torch.no_grad():
                m.mul_(0.9).add_(0.1 * g)
                v.mul_(0.999).add_(0.001 * g * g)
                x = (x + lr * (m / (1 - 0.9 ** t)) / ((v / (1 - 0.999 ** t)).sqrt() + 1e-12)).clamp(0.0, 1.0)
        if self.space is not None:
            return self._settle(x.detach().numpy(), best)
        with torch.no_grad():
            final = mixture_log_ei(self.members, x, best)
        i = int(torch.argmax(final))
        if not torch.isfinite(x[i]).all():  # a degenerate fit (e.g. values near 1e308): a candidate instead
            return raw[0].copy(), float("-inf")
        return x[i].numpy().copy(), float(final[i])

    def _settle(self, climbed: np.ndarray, best: float) -> tuple[np.ndarray, float]:
        """On a named space: the climbed points snapped to settings, the best by EI, then improved greedily one
        discrete step at a time (another choice, an integer one up or down) while EI rises."""
        def score(points: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return mixture_log_ei(self.members, torch.as_tensor(points, dtype=torch.float64), best).numpy()

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
        """The members' hyper-parameters and the fit count."""
        return {"members": self.members.state_dict(), "fits": self.fits}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.members.load_state_dict(state["members"])
        self.fits = int(state["fits"])
