"""``NESSampler``: nes_ensemble as an Optuna sampler, so a study keeps its storage, pruners and dashboard.

The study's parameters that every finished trial shares (Optuna's intersection search space) are
searched by an ``Optimizer`` over the matching named space: float and int distributions (log or
not, step 1 for ints) and categoricals. Anything else, and the first trial, fall back to Optuna's
independent random sampling. The sampler holds no state that the study does not: in a new process
(a study resumed from its storage) the optimizer is rebuilt by telling it the finished trials, as
evaluations made elsewhere, before it proposes.
"""

from __future__ import annotations

import math
from typing import Any

try:
    import optuna  # noqa: F401
except ImportError:
    raise ImportError('NESSampler needs Optuna: pip install -e ".[optuna]" (or pip install optuna)') from None
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ..optimizer import Optimizer
from ..space import Categorical, Float, Int


class NESSampler(BaseSampler):
    """Proposes each trial's parameters with a nes_ensemble ``Optimizer`` (``seed``, ``budget`` when the
    number of trials is known, and ``config`` / keyword overrides as for ``ne.Optimizer``)."""

    def __init__(self, seed: int = 0, budget: int = 0, config: dict | None = None, **overrides: Any):
        self._seed, self._budget, self._config, self._overrides = seed, budget, config, overrides
        self._fallback = RandomSampler(seed=seed)
        self._intersection = IntersectionSearchSpace(include_pruned=True)
        self._opt: Optimizer | None = None
        self._space: dict[str, BaseDistribution] = {}
        self._told: set[int] = set()

    def reseed_rng(self) -> None:
        """Reseed the fallback sampler (Optuna calls this for parallel workers)."""
        self._fallback.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """The parameters every finished trial has, of the kinds a named space holds."""
        return {name: d for name, d in self._intersection.calculate(study).items()
                if not d.single() and _param(d) is not None}

    def sample_relative(self, study: Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """One setting from the optimizer, after telling it every trial finished since it last proposed."""
        if not search_space:
            return {}
        self._raise_error_if_multi_objective(study)
        if self._opt is None or search_space != self._space:
            direction = "maximize" if study.direction == StudyDirection.MAXIMIZE else "minimize"
            space = {name: _param(d) for name, d in search_space.items()}
            self._opt = Optimizer(space, config=self._config, seed=self._seed, direction=direction,
                                  budget=self._budget, **self._overrides)
            self._space, self._told = dict(search_space), set()
        self._catch_up(study)
        return self._opt.ask(1)[0]

    def _catch_up(self, study: Study) -> None:
        states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        for t in study.get_trials(deepcopy=False, states=states):
            if t.number in self._told:
                continue
            self._told.add(t.number)
            if not all(name in t.params and d._contains(d.to_internal_repr(t.params[name]))
                       for name, d in self._space.items()):
                continue  # a trial of another space: nothing to learn from here
            value = t.value if t.state == TrialState.COMPLETE and t.value is not None else math.nan
            self._opt.tell({name: t.params[name] for name in self._space}, [value],
                           reasons=["" if t.state == TrialState.COMPLETE else f"trial {t.state.name.lower()}"])

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Parameters outside the relative space: Optuna's random sampling."""
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


def _param(d: BaseDistribution) -> Any:
    """The named-space parameter of an Optuna distribution, or None where the space cannot hold it."""
    if isinstance(d, FloatDistribution) and d.step is None:
        return Float(d.low, d.high, log=d.log)
    if isinstance(d, IntDistribution) and d.step == 1:
        return Int(d.low, d.high, log=d.log)
    if isinstance(d, CategoricalDistribution):
        return Categorical(list(d.choices))
    return None


__all__ = ["NESSampler"]
