"""The interface every proposer implements, and the registry that picks one by strategy name.

A proposer plans proposals from the run record (the ``Ledger``) and learns from evaluations told
back; it keeps only its own state. The optimizer owns the run record, the seed and the random
generators, and hands the generators to the proposer when it builds it, so one seed fixes the run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from omegaconf import DictConfig

from ..engine.ledger import Ledger, Proposal


@dataclass(frozen=True)
class RunSetup:
    """What a proposer is built from: the dimension, the whole config, the seed and the run's generators."""

    dim: int
    cfg: DictConfig
    seed: int
    rng: np.random.Generator
    generator: torch.Generator
    space: Any = None  # the named Space when the run has one (baselines that take typed parameters use it)


class Proposer(ABC):
    """Plans rounds of proposals and observes their results.

    ``plan`` is called when the ledger's queue is empty and returns the next round. ``observe`` is
    called once told evaluations are in the pool. Lineage events go into ``events``; the optimizer
    moves them to the run record after every call.
    """

    def __init__(self, setup: RunSetup):
        self.dim, self.cfg, self.seed = setup.dim, setup.cfg, setup.seed
        self.rng, self.generator = setup.rng, setup.generator
        self.events: list[dict] = []

    @property
    def name(self) -> str:
        """The strategy this proposer runs."""
        return self.cfg.strategy.name

    @abstractmethod
    def plan(self, ledger: Ledger) -> list[Proposal]:
        """The next round of proposals (at least one)."""

    def observe(self, ledger: Ledger, start: int,
                proposals: list[Proposal] | None) -> Callable[[Proposal], bool] | None:
        """Learn from the pool's rows ``start:``, which answer ``proposals`` (None: rows adopted from a journal,
        answering no proposal of this run). May return which queued proposals to withdraw."""
        return None

    def recommend(self, ledger: Ledger) -> int | None:
        """The pool index of the point to recommend (None while no evaluation succeeded): the best observation
        unless the proposer knows better."""
        return ledger.pool.best_index()

    def metrics(self, ledger: Ledger) -> dict[str, float]:
        """Numbers that describe the proposer now, for progress and tracking."""
        return {}

    def state_dict(self) -> dict[str, Any] | None:
        """The proposer's state as tensors and plain values, or None when it is rebuilt by replaying the pool."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def take_events(self) -> list[dict]:
        """The events emitted since the last call."""
        out, self.events = self.events, []
        return out
