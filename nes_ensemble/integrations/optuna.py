"""``NESSampler``: nes_ensemble as an Optuna sampler, so a study keeps its storage, pruners and dashboard.

The study's parameters that every finished trial shares (Optuna's intersection search space) are
searched by an ``Optimizer`` over the matching named space: float and int distributions (log or
not; a ``step`` becomes a whole-number grid of its values) and categoricals. The first trial falls
back to Optuna's independent random sampling. The sampler holds no state that the study does not:
in a new process (a study resumed from its storage) the optimizer is rebuilt by telling it the
finished trials, as evaluations made elsewhere, and goes on from them (no second initial design).
A pruned trial is told as bad as the worst finished one (or its last reported value, if worse), so
settings that are always pruned stop being proposed; a failed one is a failed evaluation. A setting
that a running or finished trial already has is not proposed again (two processes on one study).
"""

from __future__ import annotations

import math
from typing import Any

try:
    import optuna  # noqa: F401
except ImportError:
    raise ImportError('NESSampler needs Optuna: pip install "nes_ensemble[optuna]" (or pip install optuna)') from None
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ..engine.optimizer import Optimizer
from ..space import Categorical, Float, Int


class NESSampler(BaseSampler):
    """Proposes each trial's parameters with a nes_ensemble ``Optimizer`` (``budget`` when the number of trials is
    known, and ``config`` / keyword overrides as for ``ne.Optimizer``). ``seed`` makes a study repeatable in one
    process; the default (None) draws a fresh one, so that processes sharing a study search apart."""

    def __init__(self, seed: int | None = None, budget: int = 0, config: dict | None = None, **overrides: Any):
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
        seen = {_key(t.params, self._space) for t in study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED))
            if t.number != trial.number}
        for _ in range(8):  # a setting another trial has (a process sharing the study proposed it): the next one
            setting = self._opt.ask(1)[0]
            native = {name: _native(self._space[name], v) for name, v in setting.items()}
            if _key(native, self._space) not in seen:
                break
        return native

    def _catch_up(self, study: Study) -> None:
        states = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
        trials = study.get_trials(deepcopy=False, states=states)
        sign = 1.0 if study.direction == StudyDirection.MAXIMIZE else -1.0
        finished = [sign * t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None
                    and math.isfinite(t.value)]
        for t in trials:
            if t.number in self._told:
                continue
            self._told.add(t.number)
            if not all(name in t.params and d._contains(d.to_internal_repr(t.params[name]))
                       for name, d in self._space.items()):
                continue  # a trial of another space: nothing to learn from here
            value, reason = math.nan, f"trial {t.state.name.lower()}"
            if t.state == TrialState.COMPLETE and t.value is not None:
                value, reason = t.value, ""
            elif t.state == TrialState.PRUNED:  # as bad as the worst finished trial (or its last report, if worse)
                last = [sign * v for _, v in sorted(t.intermediate_values.items()) if math.isfinite(v)][-1:]
                worst = min(finished + last) if finished or last else math.nan
                value, reason = sign * worst, ""
            setting = {name: _internal(d, t.params[name]) for name, d in self._space.items()}
            self._opt.tell(setting, [value], reasons=[reason])

    def sample_independent(self, study: Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        """Parameters outside the relative space: Optuna's random sampling."""
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)


def _steps(d: BaseDistribution) -> int:
    """The number of steps of a stepped distribution's grid (0 for one without a step)."""
    step = getattr(d, "step", None)
    if step is None or (isinstance(d, IntDistribution) and step == 1):
        return 0
    return int(round((d.high - d.low) / step))


def _param(d: BaseDistribution) -> Any:
    """The named-space parameter of an Optuna distribution, or None where the space cannot hold it; a stepped
    one is searched as the index of its grid point (a whole number, 0 to the number of steps)."""
    if _steps(d):
        return Int(0, _steps(d))
    if isinstance(d, FloatDistribution):
        return Float(d.low, d.high, log=d.log)
    if isinstance(d, IntDistribution):
        return Int(d.low, d.high, log=d.log)
    if isinstance(d, CategoricalDistribution):
        return Categorical(list(d.choices))
    return None


def _native(d: BaseDistribution, value: Any) -> Any:
    """A value of the optimizer's space as the distribution's value (a grid index as its grid point)."""
    if not _steps(d):
        return value
    point = d.low + int(value) * d.step
    return int(point) if isinstance(d, IntDistribution) else float(min(point, d.high))


def _internal(d: BaseDistribution, value: Any) -> Any:
    """A trial's value as the optimizer's space holds it (a grid point as its index)."""
    return int(round((value - d.low) / d.step)) if _steps(d) else value


def _key(params: dict[str, Any], space: dict[str, BaseDistribution]) -> tuple:
    return tuple(repr(params.get(name)) for name in space)


__all__ = ["NESSampler"]
