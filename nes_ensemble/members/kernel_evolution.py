"""The population manager's generations for the Gaussian-process members: fork their genes, score, merge.

A Gaussian-process member's genes (``KernelMembers``: the output warp, the strength of the
length-scale prior, the noise floor, the kernel family) decide how it reads a small pool; no single
setting suits every objective (values that span orders of magnitude want a log-like warp, a smooth
one with noise does not). So every ``evolution.kernel.every`` successful evaluations:

1. each member is forked into ``children`` copies whose genes are perturbed: the warp's power and
   the logs of the prior's strength and of the noise floor by Gaussian steps, the family switched
   with probability ``switch_family``;
2. the forks and a copy of the parent are fitted (warm-started from the parent) to the pool
   without its newest evaluations, those since the last generation;
3. each is scored on those newest evaluations, test-then-train: the log density it gave their values,
   in the units of the values (the warp's Jacobian included, so members that warp differently are
   compared on one scale; summed over a pool this is the model's marginal likelihood);
4. the parent moves toward the forks that gained on it, weighted by how much:
   ``gene <- gene + eta * sum_i w_i (gene_i - gene)``. A fork's gain is the difference of its and the
   parent's log densities on each held-out evaluation, clipped to +-``clip`` nats, summed, and
   counted where positive; ``w_i`` is its share of the forks' summed gain G, times G / (G + ``evidence``),
   so a generation won by a hundredth of a nat moves the parent a hundredth of the way. (Ten held-out
   evaluations say little: unclipped and taken whole, one value a fork happened to put inside its
   spread decided a generation, and the genes drifted by chance.) The family is the best fork's when
   G reaches ``evidence``. A generation whose forks all scored below the parent leaves it as it was.

Every step emits plain events for the tracker (``kind: "gp"``). Nothing here imports MLflow or Hydra.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..config import KernelEvolutionConfig
from .kernel_members import FAMILIES, KernelMembers
from .targets import standardized

WARP_MIN = 0.0  # the warp's power lies in [WARP_MIN, 1]
PRIOR_RANGE = (1e-3, 10.0)
FLOOR_RANGE = (1e-8, 1e-2)


def genes(members: KernelMembers, i: int) -> dict[str, float | str]:
    """Member i's genes as plain values, for events."""
    return {"warp": round(float(members.warp[i]), 6), "prior": float(members.prior[i]),
            "floor": float(members.floor[i]), "family": FAMILIES[int(members.family[i])]}


def gains(forks: torch.Tensor, parent: torch.Tensor, clip: float) -> torch.Tensor:
    """Each fork's gain over its parent [forks], from their log densities of the held-out evaluations (forks
    [f, m], parent [m]): the differences, each clipped to +-``clip`` nats when ``clip`` > 0 (one evaluation that a
    model put far outside its spread decides nothing alone), summed; 0 where a fork did not gain or a density
    failed."""
    if clip > 0:
        gain = torch.nan_to_num((forks - parent).clamp(-clip, clip), nan=-np.inf).sum(1)
    else:
        gain = forks.sum(1) - parent.sum()
    return torch.where(torch.isfinite(gain), gain, 0.0).clamp_min(0.0)


def gain_weights(gain: torch.Tensor, evidence: float) -> tuple[torch.Tensor, int | None]:
    """Merge weights from the forks' gains [forks]: each fork's share of the summed gain G, times
    G / (G + ``evidence``); and the fork the parent takes its discrete genes from (the best, once G reaches
    ``evidence``; else None). All zero when no fork gained."""
    total = float(gain.sum())
    if total <= 0:
        return torch.zeros_like(gain), None
    return gain / total * (total / (total + evidence)), int(torch.argmax(gain)) if total >= evidence else None


class KernelEvolution:
    """Generations of the Gaussian-process members, with ids drawn from the population's counter."""

    def __init__(self, cfg: KernelEvolutionConfig, seed: int, budget: int, new_ids: Callable[[int], list[int]]):
        self.cfg, self.new_ids = cfg, new_ids
        self.generator = torch.Generator().manual_seed(seed + 15485863)
        self.every = cfg.every or (max(8, budget // 10) if budget else 20)
        self.last = 0  # the members' data (evaluations since their last restart) at the last generation
        self.generation = 0
        self.ids: list[int] = []  # the members' ids, given at their birth

    def births(self, members: KernelMembers, evaluations: int) -> list[dict]:
        """One 'birth' event for each Gaussian-process member."""
        self.ids = self.new_ids(members.size)
        return [{"event": "birth", "kind": "gp", "id": self.ids[i], "parent": None, "generation": 0,
                 "evaluations": evaluations, **genes(members, i)} for i in range(members.size)]

    def due(self, n: int, dim: int) -> bool:
        """Whether a generation is due with ``n`` evaluations in the members' data: ``every`` since the last one,
        and the forks have at least max(10, dim + 1) older ones to learn from."""
        return self.cfg.every >= 0 and n - self.last >= self.every and n - self.every >= max(10, dim + 1)

    def restarted(self) -> None:
        """The members' data began afresh (a restart): generations count from there."""
        self.last = 0

    def step(self, members: KernelMembers, x: np.ndarray, values: np.ndarray, evaluations: int) -> list[dict]:
        """One generation on the members' data (x [n, d], values [n], oldest first): fork, fit on all but the
        evaluations since the last generation, score on those, merge. Returns the lineage events."""
        cfg, g = self.cfg, self.generator
        old = self.last or len(values) - self.every  # the first generation holds out its last ``every``
        self.last = len(values)
        self.generation += 1
        k, c = members.size, cfg.children
        index = torch.arange(k).repeat_interleave(c + 1)  # per member: a copy of it, then its forks
        cand = members.subset(index)
        forks = (torch.arange(len(index)) % (c + 1)) != 0
        n = int(forks.sum())
        cand.warp[forks] = (cand.warp[forks] + cfg.sigma_warp * torch.randn(n, generator=g, dtype=torch.float64)
                            ).clamp(WARP_MIN, 1.0)
        cand.prior[forks] = (cand.prior[forks] * torch.exp(cfg.sigma_prior * torch.randn(
            n, generator=g, dtype=torch.float64))).clamp(*PRIOR_RANGE)
        cand.floor[forks] = (cand.floor[forks] * torch.exp(cfg.sigma_floor * torch.randn(
            n, generator=g, dtype=torch.float64))).clamp(*FLOOR_RANGE)
        switch = forks & (torch.rand(len(index), generator=g) < cfg.switch_family)
        other = torch.randint(1, len(FAMILIES), (len(index),), generator=g)
        cand.family = torch.where(switch, (cand.family + other) % len(FAMILIES), cand.family)
        points = self._score(cand, x, values, old)  # [candidates, held-out evaluations]
        fitness = points.sum(1)
        events: list[dict] = []
        ids = self.new_ids(n)
        fork_ids = iter(ids)
        for p in range(k):
            rows = torch.arange(p * (c + 1), (p + 1) * (c + 1))
            mine = [next(fork_ids) for _ in range(c)]
            for j, fid in zip(rows[1:].tolist(), mine):
                events.append({"event": "fork", "kind": "gp", "id": fid, "parent": self.ids[p],
                               "generation": self.generation, "evaluations": evaluations, **genes(cand, j)})
            before, fit = float(fitness[rows[0]]), fitness[rows[1:]]
            gain = gains(points[rows[1:]], points[rows[0]], cfg.clip)
            w = self._merge(members, p, cand, rows[1:], fit, gain)
            events.append({"event": "merge", "kind": "gp", "id": self.ids[p], "generation": self.generation,
                           "evaluations": evaluations, "forks": mine, "weights": [round(float(v), 6) for v in w],
                           "fork_fitness": [float(v) for v in fit], "fitness_before": before,
                           "gains": [round(float(v), 6) for v in gain], **genes(members, p)})
        after = self._score(members.subset(torch.arange(k)), x, values, old).sum(1)
        for e, value in zip([e for e in events if e["event"] == "merge"], after.tolist()):
            e["fitness_after"] = value
        return events

    @staticmethod
    def _score(cand: KernelMembers, x: np.ndarray, values: np.ndarray, old: int) -> torch.Tensor:
        """Each candidate's test-then-train fitness on each held-out evaluation [candidates, m]: fitted to the first
        ``old`` evaluations, the log density it gives each of the rest."""
        cand.fit(x[:old], cand.targets(standardized(values[:old])))
        score = cand.log_density(x[old:], values[old:], values[:old])
        return torch.nan_to_num(score, nan=-np.inf)

    def _merge(self, members: KernelMembers, p: int, cand: KernelMembers, rows: torch.Tensor, fit: torch.Tensor,
               gain: torch.Tensor) -> torch.Tensor:
        """Move member p's genes toward the forks ``rows`` of ``cand`` with a gain over it; the merge weights."""
        w, best = gain_weights(gain, self.cfg.evidence)  # small gains, small steps
        if float(w.sum()) == 0:
            return w
        eta = self.cfg.eta

        def pull(current: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
            return current + eta * (w * (values - current)).sum()

        members.warp[p] = pull(members.warp[p], cand.warp[rows]).clamp(WARP_MIN, 1.0)
        members.prior[p] = torch.exp(pull(torch.log(members.prior[p]), torch.log(cand.prior[rows])))
        members.floor[p] = torch.exp(pull(torch.log(members.floor[p]), torch.log(cand.floor[rows])))
        if best is not None:
            members.family[p] = cand.family[rows[best]]
        return w

    def state_dict(self) -> dict:
        """Counters, ids and the generator's state (for checkpoints)."""
        return {"last": self.last, "generation": self.generation, "ids": list(self.ids),
                "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore what ``state_dict`` returned."""
        self.last, self.generation = int(state["last"]), int(state["generation"])
        self.ids = [int(i) for i in state["ids"]]
        self.generator.set_state(state["generator"])
