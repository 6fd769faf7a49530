"""The population manager: fork the most promising members, train the forks apart, merge them back.

One generation, run every ``evolution.every`` evaluations:

1. the ``parents`` members with the best fitness (lowest test-then-train error) are chosen;
2. each is *forked* into ``children`` copies whose learning rate and weight decay are perturbed in
   log space, whose sparsity mask gains or loses a few entries, and which, with probability
   ``widen``, grow a wider hidden layer that leaves the function unchanged at the moment of the fork;
3. all forks train together (one batched population) on the pool, each on its own bootstrap
   resample, without the newest evaluations, which no member has trained on yet;
4. each fork is scored on those newest evaluations, and its parent moves toward its forks by NES
   weights: ``theta <- theta + eta * sum_i w_i (theta_i - theta)``. With ``weights="gain"`` (the
   default) ``w_i`` is fork i's gain over its parent: per held-out evaluation the log-likelihood ratio
   of their errors under a Gaussian whose variance is the parent's mean squared error, clipped to
   +-``clip`` nats, summed, counted where positive; its share of the forks' summed gain G, times
   G / (G + ``evidence``), as ``kernel_evolution`` merges the Gaussian-process members. A generation
   no fork won leaves the parent alone, a narrow win moves it a little. With ``weights="rank"``
   ``w`` are the rank-based utilities of Wierstra et al. (JMLR 2014), ``u_j ~ max(0, log(lambda/2 +
   1) - log j)`` for the j-th best fork, normalised to sum to one (with ``eta = 1`` the parent becomes
   a weighted average of its better forks, however narrowly they won). Learning rate and weight
   decay are merged in log space the same way; the mask, width and sparsity follow the best fork
   (under ``gain`` once G reaches ``evidence``), so a fork that grew wider and won passes its
   architecture on;
5. members whose error has fallen far behind the best parent's are replaced by copies of a parent
   (population based training's exploit).

Every step emits a plain event (dict) for the tracker. Nothing here imports MLflow or Hydra.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..config import EvolutionConfig
from .kernel_evolution import gain_weights
from .population import Population
from .training import OptimizerState

_STATE_FIELDS = ("t", "m", "v", "step", "prev")


def utilities(n: int) -> torch.Tensor:
    """NES rank utilities for n candidates sorted best first; non-negative, summing to one."""
    j = torch.arange(1, n + 1, dtype=torch.float64)
    u = (math.log(n / 2 + 1) - torch.log(j)).clamp_min(0.0)
    return (u / u.sum()).float()


def hyper_params(pop: Population, i: int) -> dict[str, float]:
    """Member i's hyper-parameters as plain numbers, for events."""
    return {"width": int(pop.width[i]), "depth": int(pop.depth[i]), "lr": float(pop.lr[i]),
            "weight_decay": float(pop.weight_decay[i]), "sparsity": float(pop.sparsity[i])}


def fork(pop: Population, state: OptimizerState, parents: torch.Tensor, children: int, cfg: EvolutionConfig,
         g: torch.Generator) -> tuple[Population, OptimizerState, torch.Tensor]:
    """``children`` perturbed copies of each parent (parent order, children adjacent).

    Returns the forks, their optimizer state, and which forks grew wider [n] (bool).
    """
    index = parents.repeat_interleave(children)
    forks, fstate = pop.subset(index), state.select(index)
    n = len(index)
    forks.lr = (forks.lr * torch.exp(cfg.sigma_lr * torch.randn(n, generator=g))).clamp(1e-5, 1.0)
    forks.weight_decay = (forks.weight_decay * torch.exp(cfg.sigma_weight_decay * torch.randn(n, generator=g))
                          ).clamp(1e-7, 0.1)
    forks.generation = forks.generation + 1
    # sparsity: drop a few live weights or revive a few dropped ones (revived ones start at zero, so the
    # function is unchanged until training moves them)
    new_sparsity = (forks.sparsity + cfg.sigma_sparsity * torch.randn(n, generator=g)).clamp(0.0, 0.9)
    struct = forks.structure(forks.width, forks.width)
    u = torch.rand(forks.mask.shape, generator=g)
    live = forks.mask > 0
    grow = (new_sparsity < forks.sparsity)[:, None]
    p_drop = ((new_sparsity - forks.sparsity) / (1 - forks.sparsity).clamp_min(1e-6)).clamp(0, 1)[:, None]
    p_revive = ((forks.sparsity - new_sparsity) / forks.sparsity.clamp_min(1e-6)).clamp(0, 1)[:, None]
    weights = _weight_entries(forks)
    drop = live & ~grow & (u < p_drop) & weights
    revive = ~live & (struct > 0) & grow & (u < p_revive) & weights
    forks.mask = torch.where(drop, 0.0, torch.where(revive, 1.0, forks.mask))
    forks.sparsity = new_sparsity
    # widening: new units get random incoming weights and zero outgoing ones
    top = pop.layout.width  # the padded width: the widest of ensemble.widths
    wider = (torch.rand(n, generator=g) < cfg.widen) & (forks.width < top)
    if bool(wider.any()):
        new_width = torch.where(wider, torch.minimum(forks.width * 2, torch.tensor(top)), forks.width)
        added = forks.structure(new_width, new_width) - forks.structure(forks.width, forks.width)
        feeding = forks.structure(forks.width, new_width) - forks.structure(forks.width, forks.width)
        keep = (torch.rand(forks.mask.shape, generator=g) >= forks.sparsity[:, None]).float() * weights.float()
        keep = torch.where(weights, keep, 1.0)  # biases are never sparse
        forks.mask = forks.mask + added * keep
        scale = math.sqrt(6.0 / (2 * top))
        fresh = (torch.rand(forks.theta.shape, generator=g) * 2 - 1) * scale * weights.float()
        forks.theta = (forks.theta + feeding * fresh) * forks.mask
        forks.width = new_width
    fstate.m.mul_(forks.mask)
    fstate.v.mul_(forks.mask)
    return forks, fstate, wider


def rank_weights(fitness: torch.Tensor) -> tuple[torch.Tensor, int]:
    """NES rank utilities of forks by ``fitness`` (higher is better), and the best fork."""
    order = torch.argsort(fitness, descending=True, stable=True)
    w = torch.zeros(len(fitness))
    w[order] = utilities(len(fitness))
    return w, int(order[0])


def network_gains(forks: torch.Tensor, parent: torch.Tensor, clip: float) -> torch.Tensor:
    """Each fork's gain over its parent [forks] from their squared errors on the newest evaluations (forks [f, m],
    parent [m]): per evaluation, the log-likelihood ratio under a Gaussian whose variance is the parent's mean
    squared error, clipped to +-``clip`` nats when ``clip`` > 0, summed; 0 where a fork did not gain (as
    ``kernel_evolution.gains`` scores the Gaussian-process members from their log densities)."""
    d = (parent - forks) / (2 * parent.mean()).clamp_min(1e-12)
    if clip > 0:
        d = d.clamp(-clip, clip)
    g = d.sum(1)
    return torch.where(torch.isfinite(g), g, 0.0).clamp_min(0.0)


def merge(pop: Population, state: OptimizerState, parent: int, forks: Population, fstate: OptimizerState,
          w: torch.Tensor, eta: float, best: int | None) -> torch.Tensor:
    """Move member ``parent`` toward its ``forks`` by the weights ``w``.

    Weights, optimizer moments and log learning rate / weight decay move by
    ``eta * sum_i w_i (fork_i - parent)``; mask, width and sparsity become fork ``best``'s (None: the
    parent keeps its own). Returns ``w``.
    """
    pop.generation[parent] = forks.generation[0]  # (a generation no fork won is lived through all the same)
    if float(w.sum()) == 0:
        return w

    def pull(current: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (values.dim() - 1)
        return current + eta * (w.view(shape) * (values - current)).sum(0)

    mask = forks.mask[best] if best is not None else pop.mask[parent].clone()
    pop.theta[parent] = pull(pop.theta[parent], forks.theta) * mask
    pop.lr[parent] = torch.exp(pull(torch.log(pop.lr[parent]), torch.log(forks.lr)))
    pop.weight_decay[parent] = torch.exp(pull(torch.log(pop.weight_decay[parent]), torch.log(forks.weight_decay)))
    if best is not None:
        pop.mask[parent], pop.width[parent], pop.sparsity[parent] = mask, forks.width[best], forks.sparsity[best]
    for name in _STATE_FIELDS:
        getattr(state, name)[parent] = pull(getattr(state, name)[parent], getattr(fstate, name))
    state.m[parent] *= mask
    state.v[parent] *= mask
    return w


def squared_errors(pop: Population, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Squared error of every member on each of (x [n, d], t [n]): [members, n]."""
    with torch.no_grad():
        pred = pop.forward(x.unsqueeze(0).expand(pop.size, -1, -1))
    return (pred - t) ** 2


def holdout_error(pop: Population, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Root mean squared error of every member on (x [n, d], t [n]): [members]."""
    return squared_errors(pop, x, t).mean(1).sqrt()


class Evolution:
    """Runs generations on a population and remembers ids, fitness and the events it emitted."""

    def __init__(self, cfg: EvolutionConfig, pop: Population, seed: int):
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed + 104729)
        self.error = np.full(pop.size, np.nan)  # moving average of each member's test-then-train error
        self.next_id = pop.size
        self.last = 0  # evaluations at the last generation
        self.generation = 0

    def state_dict(self) -> dict:
        """Fitness, counters and generator state (for checkpoints)."""
        return {"error": torch.from_numpy(self.error.copy()), "next_id": self.next_id, "last": self.last,
                "generation": self.generation, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""
        self.error = state["error"].numpy().copy()
        self.next_id, self.last, self.generation = int(state["next_id"]), int(state["last"]), int(state["generation"])
        self.generator.set_state(state["generator"])

    def births(self, pop: Population, evaluations: int) -> list[dict]:
        """One 'birth' event for each member of a new population."""
        return [{"event": "birth", "id": pop.ids[i], "parent": None, "generation": 0, "evaluations": evaluations,
                 **hyper_params(pop, i)} for i in range(pop.size)]

    def observe(self, rmse: np.ndarray) -> None:
        """Fold one test-then-train error per member into its moving average (the member's fitness)."""
        a = self.cfg.error_smoothing
        self.error = np.where(np.isnan(self.error), rmse, (1 - a) * self.error + a * rmse)

    def fitness(self) -> np.ndarray:
        """Higher is better: minus the moving test-then-train error (members not yet scored rank last)."""
        return np.where(np.isnan(self.error), -np.inf, -self.error)

    def due(self, evaluations: int) -> bool:
        """Whether a generation is due: ``every`` evaluations since the last, and some member has a fitness."""
        return self.cfg.every > 0 and evaluations - self.last >= self.cfg.every and np.isfinite(self.fitness()).any()

    def step(self, pop: Population, state: OptimizerState, train: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
             holdout: tuple[torch.Tensor, torch.Tensor], evaluations: int,
             draw_weights: Callable[[int], torch.Tensor], train_fn: Callable[..., None]) -> list[dict]:
        """One generation: fork, train the forks on ``train`` (x, t, ignored weights), score them on
        ``holdout`` (x, t), merge, replace. ``draw_weights(n)`` gives n fresh bootstrap rows;
        ``train_fn(pop, state, x, t, weights, steps)`` is the strategy's trainer."""
        cfg, g = self.cfg, self.generator
        self.last = evaluations
        self.generation += 1
        events: list[dict] = []
        fit_now = self.fitness()
        n_par = min(cfg.parents, pop.size)
        parents = torch.tensor(np.argsort(-fit_now, kind="stable")[:n_par])
        forks, fstate, wider = fork(pop, state, parents, cfg.children, cfg, g)
        fork_ids = list(range(self.next_id, self.next_id + forks.size))
        self.next_id += forks.size
        for j, fid in enumerate(fork_ids):
            p = int(parents[j // cfg.children])
            events.append({"event": "fork", "id": fid, "parent": pop.ids[p], "generation": int(forks.generation[j]),
                           "evaluations": evaluations, "wider": bool(wider[j]), **hyper_params(forks, j)})
        x, t, _ = train
        train_fn(forks, fstate, x, t, draw_weights(forks.size), cfg.fork_steps)
        hx, ht = holdout
        fork_sq, parent_sq = squared_errors(forks, hx, ht), squared_errors(pop.subset(parents), hx, ht)
        fork_fit, before = -fork_sq.mean(1).sqrt(), -parent_sq.mean(1).sqrt()
        for a, p in enumerate(parents.tolist()):
            sl = slice(a * cfg.children, (a + 1) * cfg.children)
            mine = torch.arange(sl.start, sl.stop)
            extra = {}
            if cfg.weights == "gain":
                gain = network_gains(fork_sq[sl], parent_sq[a], cfg.clip)
                w, best = gain_weights(gain, cfg.evidence)
                extra = {"gains": [round(float(v), 6) for v in gain]}
            else:
                w, best = rank_weights(fork_fit[sl])
            merge(pop, state, p, forks.subset(mine), fstate.select(mine), w, cfg.eta, best)
            after = float(-holdout_error(pop.subset(torch.tensor([p])), hx, ht)[0])
            events.append({"event": "merge", "id": pop.ids[p], "generation": int(pop.generation[p]),
                           "evaluations": evaluations, "forks": fork_ids[sl],
                           "weights": [round(float(v), 6) for v in w],
                           "fork_fitness": [float(v) for v in fork_fit[sl]], "fitness_before": float(before[a]),
                           "fitness_after": after, **extra, **hyper_params(pop, p)})
        events += self._replace(pop, state, parents, evaluations)
        return events

    def _replace(self, pop: Population, state: OptimizerState, parents: torch.Tensor, evaluations: int) -> list[dict]:
        """PBT exploit: a member whose error is ``replace_factor`` times the best's becomes a copy of the best
        member with its own activation (so the population keeps every activation)."""
        cfg = self.cfg
        if cfg.replace_factor <= 0:
            return []
        best = float(np.nanmin(self.error))
        losers = [i for i in range(pop.size) if i not in parents.tolist()
                  and np.isfinite(self.error[i]) and self.error[i] > cfg.replace_factor * best]
        events: list[dict] = []
        for i in losers:
            # the source shares the loser's activation, so members keep their activation blocks
            same = [j for j in range(pop.size) if j not in losers and bool((pop.act[j] == pop.act[i]).all())
                    and np.isfinite(self.error[j])]
            if not same:
                continue
            src = min(same, key=lambda j: self.error[j])
            if self.error[i] <= cfg.replace_factor * self.error[src]:
                continue
            new_id = self.next_id
            self.next_id += 1
            events.append({"event": "replace", "id": new_id, "replaced": pop.ids[i], "parent": pop.ids[src],
                           "generation": int(pop.generation[src]) + 1, "evaluations": evaluations,
                           "fitness_before": float(-self.error[i]), "fitness_after": float(-self.error[src]),
                           **hyper_params(pop, src)})
            idx = torch.tensor([i])
            copy = pop.subset(torch.tensor([src]))
            copy.generation += 1
            pop.put(idx, copy, [new_id])
            for name in _STATE_FIELDS:
                getattr(state, name)[i] = getattr(state, name)[src]
            self.error[i] = self.error[src]
        return events


def _weight_entries(pop: Population) -> torch.Tensor:
    """[members, P] bool: True on weight-matrix entries, False on biases."""
    flags = torch.zeros(1, pop.layout.size)
    for name, view in pop.layout.views(flags).items():
        if name.startswith("w"):
            view.fill_(1.0)
    return (flags > 0).expand(pop.size, -1)
