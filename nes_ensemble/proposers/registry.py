"""The proposer of each strategy name."""

from __future__ import annotations

from typing import Callable

from ..members.ensemble import NETWORK_STRATEGIES
from .base import Proposer, RunSetup
from .baselines import PROPOSERS as BASELINE_PROPOSERS
from .original import OriginalProposer
from .surrogate import SurrogateProposer


def _network(setup: RunSetup) -> Proposer:
    """The population's proposer: ascents on the surrogates, or the original scheme (``search.mode``)."""
    return OriginalProposer(setup) if setup.cfg.search.mode == "original" else SurrogateProposer(setup)


REGISTRY: dict[str, Callable[[RunSetup], Proposer]] = {
    **{name: _network for name in NETWORK_STRATEGIES}, **BASELINE_PROPOSERS}


def make_proposer(setup: RunSetup) -> Proposer:
    """The proposer for ``setup.cfg.strategy.name``."""
    name = setup.cfg.strategy.name
    if name not in REGISTRY:
        raise ValueError(f"strategy={name!r}: choose from {', '.join(REGISTRY)}")
    return REGISTRY[name](setup)
