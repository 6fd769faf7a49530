"""Gaussian-process members: they know where they do not know, and expected improvement uses it."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import nes_ensemble as ne
from nes_ensemble.config import KernelConfig
from nes_ensemble.kernel_members import KernelMembers, log_expected_improvement, mixture_log_ei
from nes_ensemble.proposers.kernel import KernelSearch
from nes_ensemble.recommendation import noise_seen, recommend
from nes_ensemble.targets import score_targets, standardized


def _data(n=12, seed=0):
    x = np.random.default_rng(seed).random((n, 2)) * 0.5  # the lower-left quarter only
    y = np.sin(6 * x[:, 0]) + np.cos(5 * x[:, 1])
    return x, (y - y.mean()) / y.std()


def test_the_spread_shrinks_at_the_data_and_grows_away_from_them():
    x, y = _data()
    members = KernelMembers(2, 3)
    members.fit(x, y)
    _, at = members.predict(torch.tensor(x))
    _, near = members.predict(torch.tensor(x + 0.05))
    _, far = members.predict(torch.tensor([[0.95, 0.95], [0.9, 0.99]]))
    assert at.max() < 0.05 * far.min()
    assert (near.mean(1) < far.mean(1)).all()


def test_a_sample_of_a_member_fitted_to_a_few_points_interpolates_them_within_the_noise():
    x, y = _data(8)
    members = KernelMembers(2, 1)
    members.fit(x, y)
    mean, var = members.predict(torch.tensor(x))
    noise = float(torch.exp(members.log_noise)[0]) + 1e-6
    assert np.abs(mean[0].numpy() - y).max() < 3 * np.sqrt(noise) + 1e-3
    assert (var[0] < 0.05).all()
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([members.sample(torch.tensor(x), g)[0] for _ in range(20)]).numpy()
    assert np.abs(draws - y).max() < 4 * np.sqrt(noise) + 0.02  # every draw passes through the data
    away = torch.stack([members.sample(torch.tensor([[0.9, 0.9]]), g)[0] for _ in range(200)]).numpy()
    assert away.std() > 0.3  # and spreads where there are none


def test_log_expected_improvement_is_finite_and_ordered_far_into_the_tail():
    mean = torch.tensor([0.0, -5.0, -20.0, -40.0], dtype=torch.float64)
    value = log_expected_improvement(mean, torch.ones(4, dtype=torch.float64), 1.0)
    assert torch.isfinite(value).all() and (value[:-1] > value[1:]).all()
    exact = np.log(0.0833155)  # E[max(N(0,1) - 1, 0)]
    assert value[0].item() == pytest.approx(exact, rel=1e-4)


def test_expected_improvement_is_highest_where_the_mean_is_high_or_the_spread_is_wide():
    x, y = _data()
    members = KernelMembers(2, 1)
    members.fit(x, y)
    best = float(y.max())
    at_best = mixture_log_ei(members, torch.tensor(x[[np.argmax(y)]]), best)
    at_worst = mixture_log_ei(members, torch.tensor(x[[np.argmin(y)]]), best)
    unexplored = mixture_log_ei(members, torch.tensor([[0.95, 0.95]]), best)
    assert unexplored > at_worst and at_best > at_worst


def test_a_round_of_several_proposals_spreads_them_out():
    x, y = _data(15)
    pool = ne.Optimizer([(0, 1)] * 2, seed=0).ledger
    from nes_ensemble.pool import Provenance

    pool.pool.add(x, y, [Provenance("initial")] * len(y))
    search = KernelSearch(2, OmegaConf.structured(KernelConfig(until=50)), 0,
                          np.random.default_rng(0))
    out = search.plan(pool, 3, 1)
    points = np.stack([p.x for p in out])
    assert len(out) == 3 and all(p.provenance.source == "kernel" for p in out)
    assert min(np.linalg.norm(points[i] - points[j]) for i in range(3) for j in range(i)) > 1e-3


def test_the_default_finds_hartmann6s_maximum_at_100_evaluations():
    h6 = ne.make_problem("hartmann6")
    result = ne.optimize(h6, h6.bounds, budget=100, seed=2)
    assert list(result.history.source[:12]) == ["initial"] * 10 + ["repeat", "kernel"]
    assert set(result.history.source[11:]) == {"kernel"}
    assert h6.regret(result.best_x) < 0.01


def test_a_repeat_tells_noise_from_a_rugged_landscape():
    x = np.random.default_rng(0).random((10, 3))
    y = np.sin(20 * x.sum(1))
    assert not noise_seen(x, y)
    repeated = np.vstack([x, x[:1]])
    assert not noise_seen(repeated, np.append(y, y[0]))
    assert noise_seen(repeated, np.append(y, y[0] + 0.01))
    assert not noise_seen(repeated, np.append(y, np.nan))  # a failed repeat says nothing


def test_under_noise_the_recommendation_is_the_point_the_model_believes_best():
    # a smooth hill, measured with noise 0.1: the best observation is a lucky draw, not the best point
    rng = np.random.default_rng(3)
    x = rng.random((60, 2))
    truth = -((x - 0.5) ** 2).sum(1)
    y = truth + 0.1 * rng.standard_normal(60)
    observed = int(np.argmax(y))
    chosen = recommend(x, y)
    assert truth.max() - truth[chosen] < 0.01
    assert truth[chosen] > truth[observed] + 0.01
    deterministic = recommend(x, truth)  # no noise fitted: the best observation itself
    assert deterministic == int(np.argmax(truth))


def test_a_noisy_run_recommends_a_point_whose_true_value_is_near_the_optimum():
    noisy = ne.make_problem("hartmann6", noise_std=0.1, seed=2)
    h6 = ne.make_problem("hartmann6")
    result = ne.optimize(noisy, noisy.bounds, budget=100, seed=2)
    assert (result.history.source == "repeat").sum() == 1
    observed = result.X[int(np.argmax(result.y))]
    assert h6.regret(result.best_x) < 0.05
    assert h6.regret(result.best_x) < h6.regret(observed)


def test_standardized_targets_of_values_near_the_float_limit_are_finite():
    y = np.array([8.98e307, -8.98e307, 1e300, 0.0])
    z = standardized(y)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z, standardized(y / 1e300), rtol=1e-9)
    assert np.isfinite(score_targets(np.array([1.7e308]), y, "standardize")).all()
