"""Baselines behind the same ask / tell: they run, respect the contract, find what they should, resume."""

import builtins

import numpy as np
import pytest

import nes_ensemble as ne


def sphere(x):
    return -float(np.sum((np.asarray(x) - 0.3) ** 2))


BOUNDS = [(-1.0, 2.0)] * 3


@pytest.mark.parametrize("strategy", ["random", "sobol", "cmaes", "snes", "xnes", "pgpe"])
def test_baseline_keeps_the_call_count_and_bounds_contract(strategy):
    seen = []

    def f(x):
        seen.append(np.array(x))
        return sphere(x)

    result = ne.optimize(f, BOUNDS, budget=50, seed=0, strategy=strategy)
    X = np.array(seen)
    assert len(X) == 50 and np.all(X >= -1) and np.all(X <= 2)
    assert result.history.source.eq(strategy).all()
    again = ne.optimize(sphere, BOUNDS, budget=50, seed=0, strategy=strategy)
    np.testing.assert_array_equal(result.X, again.X)  # same seed, same run


def test_random_search_depends_on_the_seed_alone():
    # it once drew bootstrap weights for a network population it never built, so ensemble.* moved its points
    a = ne.optimize(sphere, BOUNDS, budget=30, seed=0, strategy="random")
    b = ne.optimize(sphere, BOUNDS, budget=30, seed=0, strategy="random", ensemble={"members": 3, "bootstrap": False})
    np.testing.assert_array_equal(a.X, b.X)
    lo, hi = np.array(BOUNDS).T
    np.testing.assert_allclose(a.X[:20], lo + np.random.default_rng(0).random((20, 3)) * (hi - lo))


def test_evolution_strategies_beat_random_search_on_a_sphere():
    def regret(strategy, seed):
        return -ne.optimize(sphere, BOUNDS, budget=150, seed=seed, strategy=strategy).best_y

    rand = np.median([regret("random", s) for s in range(3)])
    for strategy in ("cmaes", "snes", "xnes"):
        assert np.median([regret(strategy, s) for s in range(3)]) < rand / 5, strategy


def test_a_baseline_resumes_exactly_from_a_checkpoint(tmp_path):
    ref = ne.Optimizer(BOUNDS, seed=3, strategy={"name": "cmaes"})
    opt = ne.Optimizer(BOUNDS, seed=3, config={"strategy": {"name": "cmaes"}})
    assert type(opt.proposer).__name__ == "EvotorchSearch"
    for step in range(8):
        for o in (ref, opt):
            X = o.ask()
            o.tell(X, [sphere(x) for x in X])
        if step == 3:
            opt.save(tmp_path / "c.pt")
            opt = ne.Optimizer.load(tmp_path / "c.pt")
    np.testing.assert_array_equal(ref.ask(), opt.ask())
    np.testing.assert_array_equal(ref.pool.x, opt.pool.x)


def test_optional_baseline_without_its_extra_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_optuna(name, *args, **kwargs):
        if name == "optuna":
            raise ImportError("No module named 'optuna'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optuna)
    with pytest.raises(ValueError, match=r'strategy=tpe needs optuna: .*pip install "nes_ensemble\[baselines\]"'):
        ne.optimize(sphere, BOUNDS, budget=10, strategy="tpe")


def test_tpe_runs_when_its_extra_is_installed():
    pytest.importorskip("optuna")
    result = ne.optimize(sphere, BOUNDS, budget=40, seed=0, strategy="tpe")
    assert len(result.X) == 40 and result.best_y > -0.5


def test_optunas_gp_sampler_finds_the_sphere_optimum_when_its_extra_is_installed():
    pytest.importorskip("optuna")
    result = ne.optimize(sphere, BOUNDS, budget=25, seed=0, strategy="ogp")
    assert len(result.X) == 25 and result.best_y > -1e-2  # a Gaussian process nails a smooth bowl
    assert (result.history.source == "ogp").all()  # each point says which baseline proposed it
