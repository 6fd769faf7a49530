"""``NESSearch``: nes_ensemble as a Ray Tune search algorithm, so a Tune experiment keeps its trainables,
schedulers, resources and cluster and only the choice of each trial's config changes.

    from ray import tune
    from nes_ensemble.integrations.ray_tune import NESSearch

    space = {"lr": tune.loguniform(1e-4, 1e-1), "layers": tune.randint(1, 8), "opt": tune.choice(["adam", "sgd"])}
    tuner = tune.Tuner(train, param_space=space, tune_config=tune.TuneConfig(
        search_alg=NESSearch(seed=0), metric="loss", mode="min", num_samples=60, max_concurrent_trials=4))

Tune's ``uniform / loguniform / randint / lograndint / choice`` (and their quantized forms) map to
``ne.Float / ne.Int / ne.Categorical``; constants in the space pass through as Tune passes them.
``num_samples`` is the optimizer's budget. Trials still running when another config is asked are
pending points of the optimizer (it plans around them as it does for ``ask`` without ``tell``). A trial
that errs, or ends without a finite value of the metric, is a failed evaluation.
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

try:
    from ray.tune.search import Searcher
    from ray.tune.search.sample import Categorical as TuneCategorical
    from ray.tune.search.sample import Domain, Float, Integer, LogUniform, Quantized, Uniform
    from ray.tune.search.variant_generator import parse_spec_vars
    from ray.tune.utils.util import flatten_dict, unflatten_dict
except ImportError:
    raise ImportError('NESSearch needs Ray Tune: pip install "nes_ensemble[ray]" (or "ray[tune]")') from None

from ..engine import checkpoint
from ..engine.optimizer import Optimizer
from ..space import Categorical, Int, Space
from ..space import Float as NEFloat

_MODES = {"min": "minimize", "max": "maximize"}


class NESSearch(Searcher):
    """Suggests each trial's config with a nes_ensemble ``Optimizer``.

    ``space`` is a Tune search space (else Tune's ``param_space`` is used); ``metric`` / ``mode`` as for any
    Tune searcher (or from ``TuneConfig``); ``budget`` defaults to Tune's ``num_samples``; ``seed``, ``config``
    and keyword overrides as for ``ne.Optimizer`` (``strategy="sgd"``, ``ensemble={"members": 20}``)."""

    def __init__(self, space: Mapping[str, Any] | None = None, metric: str | None = None, mode: str | None = None,
                 seed: int | None = 0, budget: int = 0, config: Mapping[str, Any] | None = None, **overrides: Any):
        if mode is not None and mode not in _MODES:
            raise ValueError(f"NESSearch(mode={mode!r}): choose 'min' or 'max'")
        super().__init__(metric=metric, mode=mode)
        self._seed, self._budget = seed, budget
        self._config, self._overrides = dict(config or {}), overrides
        self._params: dict[str, Any] = {}  # flattened name -> (ne parameter, how to make its Tune value)
        self._opt: Optimizer | None = None
        self._trials: dict[str, dict[str, Any]] = {}  # trial id -> the setting (the optimizer's values) it runs
        self._space = dict(space) if space else None
        if self._space:
            self._params = convert_space(self._space)

    # ------------------------------------------------------------------ what Tune calls
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """Take Tune's ``param_space``, metric, mode and ``num_samples`` (unless given to the constructor)."""
        if self._opt is not None:  # restored (or in use): Tune's space must be the one it searches
            try:
                same = {n: p for n, (p, _) in convert_space(config).items()} == {
                    n: p for n, (p, _) in self._params.items()}
            except ValueError:
                same = False
            return same
        if self._space and config and parse_spec_vars(dict(config))[1]:
            return False
        if mode is not None and mode not in _MODES:
            raise ValueError(f"NESSearch: mode={mode!r}: choose 'min' or 'max'")
        self._metric, self._mode = metric or self._metric, mode or self._mode
        if not self._space:
            self._space = dict(config)
            self._params = convert_space(self._space)
        if not self._budget and isinstance(spec.get("num_samples"), int) and spec["num_samples"] > 0:
            self._budget = spec["num_samples"]
        return True

    def suggest(self, trial_id: str) -> dict | None:
        """The next trial's config (nested as the space is)."""
        opt = self._optimizer()
        setting = opt.ask(1)[0]
        self._trials[trial_id] = setting
        return unflatten_dict({name: _tune_value(self._params[name], v) for name, v in setting.items()})

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell the optimizer the trial's last value of the metric (an error or no finite value: a failed
        evaluation)."""
        setting = self._trials.pop(trial_id, None)
        if setting is None or self._opt is None:
            return
        value, reason = math.nan, "the trial raised an error" if error else ""
        if not error:
            raw = (result or {}).get(self._metric)
            try:
                value = float(raw)
            except (TypeError, ValueError):
                reason = f"the trial reported {self._metric}={raw!r}, not a number"
            else:
                if not math.isfinite(value):
                    reason = f"the trial reported {self._metric}={raw!r}"
        self._opt.tell([setting], [value], reasons=[reason])

    def add_evaluated_point(self, parameters: dict, value: float, error: bool = False, pruned: bool = False,
                            intermediate_values: list | None = None) -> None:
        """A config evaluated outside this search (a trial of an earlier experiment): it counts too."""
        flat = flatten_dict(parameters, delimiter="/")
        setting = {name: _ne_value(self._params[name], flat[name]) for name in self._params}
        self._optimizer().tell([setting], [math.nan if error or value is None else float(value)],
                               reasons=["the trial raised an error" if error else ""])

    # ------------------------------------------------------------------ save / restore
    def save(self, checkpoint_path: str) -> None:
        """The optimizer's checkpoint (a file of plain values and tensors) with the trials under way."""
        checkpoint.write(checkpoint_path, {**self._optimizer().state_dict(), "ray_tune": {
            "metric": self._metric, "mode": self._mode, "budget": self._budget, "space": self._space_record(),
            "trials": [[trial, setting] for trial, setting in self._trials.items()]}})

    def restore(self, checkpoint_path: str) -> None:
        """Continue where ``save`` stopped: trials under way stay under way (Tune reruns them under their ids, and
        their points are not suggested again)."""
        saved = checkpoint.read(checkpoint_path).get("ray_tune")
        if not isinstance(saved, dict) or not isinstance(saved.get("trials"), list):
            raise ValueError(f"{checkpoint_path}: not a checkpoint of NESSearch")
        opt = Optimizer.load(checkpoint_path)
        specs = [tuple(s) if isinstance(s, (list, tuple)) else () for s in saved.get("space") or []]
        if not isinstance(opt.box, Space) or len(specs) != len(opt.box.params) or not all(map(_spec_ok, specs)):
            raise ValueError(f"{checkpoint_path}: a damaged checkpoint of NESSearch (its space)")
        self._params = {name: (p, spec) for (name, p), spec in zip(opt.box.params.items(), specs)}
        if isinstance(saved.get("metric"), str) and not self._metric:
            self._metric = saved["metric"]
        if saved.get("mode") in _MODES and not self._mode:
            self._mode = saved["mode"]
        self._budget = self._budget or opt.cfg.budget
        trials = [t for t in saved["trials"] if isinstance(t, list) and len(t) == 2 and isinstance(t[1], dict)]
        again = opt.ask(len(trials)) if trials else []  # the points they run, taken out of the queue again
        self._trials = {str(trial): setting for (trial, _), setting in zip(trials, again)}
        self._opt = opt

    def _space_record(self) -> list:
        return [spec for _, spec in self._params.values()]

    # ------------------------------------------------------------------ the optimizer
    def _optimizer(self) -> Optimizer:
        if self._opt is not None:
            return self._opt
        if not self._params:
            raise ValueError("NESSearch: no search space: give NESSearch(space=...) or Tuner(param_space=...) with "
                             "tune.uniform / loguniform / randint / choice entries")
        if not self._metric or not self._mode:
            raise ValueError(f"NESSearch: metric={self._metric!r}, mode={self._mode!r}: give both, to NESSearch or "
                             "to tune.TuneConfig(metric=..., mode=...)")
        self._opt = Optimizer({name: p for name, (p, _) in self._params.items()}, config=self._config or None,
                              seed=self._seed, direction=_MODES[self._mode], budget=self._budget, **self._overrides)
        return self._opt

    def __getstate__(self) -> dict:
        # Tune pickles its searcher with the experiment; the optimizer travels as its checkpoint state
        state = dict(self.__dict__)
        opt = state.pop("_opt")
        state["_opt_state"] = None if opt is None else opt.state_dict()
        return state

    def __setstate__(self, state: dict) -> None:
        saved = state.pop("_opt_state", None)
        self.__dict__.update(state)
        self._opt = None
        if saved is not None:
            import tempfile

            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "optimizer.pt")
                checkpoint.write(path, saved)
                self._opt = Optimizer.load(path)
                again = self._opt.ask(len(self._trials)) if self._trials else []
                self._trials = dict(zip(self._trials, again))


def convert_space(space: Mapping[str, Any]) -> dict[str, tuple[Any, tuple]]:
    """A Tune search space as named parameters: flattened name ("model/lr" for nested dicts) -> (the ne
    parameter, a record of how its values map back to Tune's). Raises a ValueError naming a parameter that has
    no equivalent (grid search, normal sampling, ``sample_from``)."""
    _, domains, grids = parse_spec_vars(dict(space))
    if grids:
        raise ValueError(f"NESSearch: {'/'.join(map(str, grids[0][0]))}: tune.grid_search is not a distribution to "
                         "search; run a grid with Tune's own search, or give a tune.choice")
    _, domains, _ = parse_spec_vars(flatten_dict(dict(space), prevent_delimiter=True))
    params = {}
    for path, domain in domains:
        name = "/".join(map(str, path))
        params[name] = _param(name, domain)
    if not params:
        raise ValueError("NESSearch: the search space has no tune.uniform / loguniform / randint / choice entry")
    return params


def _param(name: str, domain: Domain) -> tuple[Any, tuple]:
    sampler, step = domain.get_sampler(), None
    if isinstance(sampler, Quantized):
        sampler, step = sampler.sampler, sampler.q
    kind = type(sampler).__name__
    try:
        if isinstance(domain, TuneCategorical) and isinstance(sampler, Uniform):
            p = Categorical(list(domain.categories))
            spec: tuple = ("choice",)
        elif isinstance(domain, (Float, Integer)) and isinstance(sampler, (Uniform, LogUniform)):
            log, integer = isinstance(sampler, LogUniform), isinstance(domain, Integer)
            low, high = domain.lower, domain.upper
            if step and log:  # a log scale rounded to multiples of q: searched on the log scale, rounded for the trial
                p, spec = NEFloat(float(low), float(high), log=True), ("qlog", float(step), integer)
            elif step:  # a grid low, low + q, ...: searched as the index of its point
                count = int(math.floor((high - low) / step + 1e-9))
                p, spec = Int(0, count), ("grid", float(low), float(step), integer)
            elif integer:  # Tune's randint excludes its upper end
                p, spec = Int(int(low), int(high) - 1, log=log), ("int",)
            else:
                p, spec = NEFloat(float(low), float(high), log=log), ("float",)
        else:
            raise ValueError(f"{type(domain).__name__} with {kind} sampling has no nes_ensemble equivalent; use "
                             "tune.uniform / loguniform / randint / lograndint / choice (or their q- forms)")
        p.check(name)
    except ValueError as err:
        text = str(err)
        raise ValueError(f"NESSearch: {text if text.startswith(name) else f'{name}: {text}'}") from None
    return p, spec


def _spec_ok(spec: tuple) -> bool:
    """Whether a saved record of how a parameter's values map back to Tune's is one ``_param`` writes."""
    if spec in (("choice",), ("int",), ("float",)):
        return True
    if len(spec) == 3 and spec[0] == "qlog":
        return isinstance(spec[1], float) and math.isfinite(spec[1]) and spec[1] > 0 and isinstance(spec[2], bool)
    return (len(spec) == 4 and spec[0] == "grid" and all(isinstance(v, float) and math.isfinite(v) for v in spec[1:3])
            and spec[2] > 0 and isinstance(spec[3], bool))


def _tune_value(param: tuple[Any, tuple], value: Any) -> Any:
    """The optimizer's value of a parameter as the trial gets it."""
    p, spec = param
    if spec[0] == "qlog":
        point = min(max(round(value / spec[1]) * spec[1], p.low), p.high)
        return int(round(point)) if spec[2] else float(f"{point:.15g}")
    if spec[0] != "grid":
        return value
    _, low, step, integer = spec
    point = low + int(value) * step
    return int(round(point)) if integer else float(f"{point:.15g}")


def _ne_value(param: tuple[Any, tuple], value: Any) -> Any:
    """A trial's value of a parameter as the optimizer holds it (a grid point as its index)."""
    _, spec = param
    return int(round((value - spec[1]) / spec[2])) if spec[0] == "grid" else value


__all__ = ["NESSearch", "convert_space"]
