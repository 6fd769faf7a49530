"""Property-based: random bad input at the public interface is accepted and correct, or rejected with a
documented error (ValueError naming the problem); never an unexpected exception."""

import math
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import nes_ensemble as ne
from nes_ensemble.config import COUNTS

floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64), st.integers(-5, 5))
bounds_lists = st.lists(st.lists(floats, min_size=0, max_size=3), min_size=0, max_size=3)
FAST = {"ensemble": {"members": 2, "train_steps_initial": 5, "train_steps": 2}, "search": {"n_init": 3}}


def _valid(bounds) -> bool:
    try:
        b = np.asarray(bounds, dtype=float)
    except (TypeError, ValueError):
        return False
    return b.ndim == 2 and b.shape[0] >= 1 and b.shape[1] == 2 and np.isfinite(b).all() and (b[:, 0] < b[:, 1]).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bounds=bounds_lists)
def test_bounds_are_accepted_exactly_when_valid(bounds):
    try:
        opt = ne.Optimizer(bounds, config=FAST, seed=0)
    except ValueError as err:
        assert not _valid(bounds), err
        assert str(err)
        return
    assert _valid(bounds)
    X = opt.ask(2)
    b = np.asarray(bounds, dtype=float)
    assert X.shape == (2, len(b)) and np.all(X >= b[:, 0]) and np.all(X <= b[:, 1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.integers(0, 4), cols=st.integers(0, 4), values=st.lists(floats, min_size=0, max_size=5),
       tamper=st.booleans())
def test_tell_accepts_what_was_asked_or_lies_inside_the_bounds_and_rejects_the_rest(rows, cols, values, tamper):
    opt = ne.Optimizer([(0, 1), (0, 1)], config=FAST, seed=0)
    asked = opt.ask(3)
    X = asked[:rows, :cols] if cols != 2 else asked[:rows]
    if tamper and len(X):
        X = X + 0.5
    try:
        opt.tell(X, values)
    except ValueError as err:
        assert str(err)
        return
    # accepted: asked points, or points evaluated elsewhere inside the bounds, with one value each
    assert X.shape[1] == 2 and len(values) == len(X) or len(X) == 0
    assert not tamper or len(X) == 0 or ((X >= 0) & (X <= 1)).all()
    told = np.asarray(values, dtype=float)
    assert opt.n_evaluations == len(X)
    assert np.array_equal(np.isfinite(opt.pool.y), np.isfinite(told))  # NaN / inf are failed evaluations


settings_keys = st.sampled_from([
    ("ensemble", "members"), ("ensemble", "lr_min"), ("ensemble", "widths"), ("search", "mode"),
    ("search", "sigma_init"), ("evolution", "eta"), ("evaluator", "timeout"), ("strategy", "name"),
    ("search", "n_init"), ("ensemble", "membres"), ("serach", "mode")])
setting_values = st.one_of(st.integers(-3, 50), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                           st.lists(st.integers(-2, 8), max_size=3), st.none())


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=settings_keys, value=setting_values)
@example(key=("search", "n_init"), value=-1)  # found by CI's random draw: numpy's "negative dimensions" error
def test_config_values_are_accepted_or_rejected_with_a_message_naming_the_key(key, value):
    group, name = key
    try:
        opt = ne.Optimizer([(0, 1)] * 2, seed=0, **{group: {name: value}})
    except ValueError as err:
        assert group in str(err) or name in str(err) or repr(value) in str(err), err
        return
    X = opt.ask(1)
    assert X.shape == (1, 2) and np.all((X >= 0) & (X <= 1))


@pytest.mark.parametrize("key", ["search.n_init", *COUNTS])
def test_a_negative_count_is_refused_naming_its_key(key):
    group, *path = key.split(".")
    node = -1
    for part in reversed(path):
        node = {part: node}
    with pytest.raises(ValueError, match=rf"^{re.escape(key)}=-1: must be >= 0"):
        ne.Optimizer([(0, 1)] * 2, seed=0, **{group: node})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.slow
@given(values=st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.just(math.nan)),
                       min_size=12, max_size=12))
@example(values=[math.nan] * 4 + [8.98846567431158e307] + [math.nan] * 4 + [8.988465674311579e307] + [math.nan] * 2)
def test_optimize_survives_any_values_the_objective_returns(values):
    it = iter(values)
    result = ne.optimize(lambda x: next(it), [(0, 1)] * 2, budget=12, seed=0, evaluator={"max_failures": 0}, **FAST)
    assert len(result.y) == 12
    finite = np.isfinite(np.asarray(values, dtype=float))
    assert ((result.history.status == "ok").to_numpy() == finite).all()


not_numbers = st.one_of(st.floats(allow_nan=True), st.booleans(), st.none(), st.text(max_size=3),
                        st.lists(st.integers(0, 3), max_size=2))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=st.one_of(st.integers(-3, 8), not_numbers), seed=st.one_of(st.integers(-3, 5), st.integers(2**62, 2**70),
                                                                        not_numbers))
def test_optimize_runs_its_budget_or_names_the_argument_it_refuses(budget, seed):
    try:
        result = ne.optimize(lambda x: float(x.sum()), [(0, 1)] * 2, budget=budget, seed=seed, **FAST)
    except ValueError as err:
        assert str(err).startswith(("budget=", "seed=", "search.n_init=")), err
        valid_budget = isinstance(budget, int) and not isinstance(budget, bool) and budget >= 1
        valid_seed = seed is None or (isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63)
        assert not (valid_budget and valid_seed and budget >= 3), err  # (n_init=3 needs a budget of 3)
        return
    assert isinstance(budget, int) and len(result.y) == budget


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(budget=st.sampled_from(["0", "-3", "2.5", "true", "abc", "4"]), seed=st.sampled_from(["-1", "1.7", "abc", "3"]))
def test_the_command_line_runs_or_names_the_argument_it_refuses(budget, seed, tmp_path_factory):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run_dir = tmp_path_factory.mktemp("cli")
    done = subprocess.run([sys.executable, "-m", "nes_ensemble", "problem=branin", f"budget={budget}", f"seed={seed}",
                           "ensemble.members=2", "search.n_init=3", "tracking.enabled=false", "progress=false",
                           f"hydra.run.dir={run_dir}"], cwd=root, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})
    if budget == "4" and seed == "3":
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert "budget" in done.stderr or "seed" in done.stderr, done.stderr
