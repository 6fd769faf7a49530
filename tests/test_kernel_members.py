"""Gaussian-process members: they know where they do not know, and expected improvement uses it."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import nes_ensemble as ne
from nes_ensemble.config import KernelConfig
from nes_ensemble.engine.recommendation import noise_seen, recommend
from nes_ensemble.members.kernel_members import KernelMembers, log_expected_improvement, mixture_log_ei
from nes_ensemble.members.targets import score_targets, standardized
from nes_ensemble.proposers.kernel import KernelSearch


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
    from nes_ensemble.engine.pool import Provenance

    pool.pool.add(x, y, [Provenance("initial")] * len(y))
    search = KernelSearch(2, OmegaConf.structured(KernelConfig(until=50)), 0,
                          np.random.default_rng(0))
    out = search.plan(pool, 3, 1)
    points = np.stack([p.x for p in out])
    assert len(out) == 3 and all(p.provenance.source == "kernel" for p in out)
    assert min(np.linalg.norm(points[i] - points[j]) for i in range(3) for j in range(i)) > 1e-3


@pytest.mark.slow  # (the default suite keeps to about 5 minutes; the slow suite runs it)
def test_the_default_finds_hartmann6s_maximum_at_100_evaluations():
    h6 = ne.make_problem("hartmann6")
    result = ne.optimize(h6, h6.bounds, budget=100, seed=2)
    assert list(result.history.source[:12]) == ["initial"] * 10 + ["repeat", "kernel"]
    assert set(result.history.source[11:]) <= {"kernel", "polish"}
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


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_a_noisy_run_recommends_a_point_whose_true_value_is_near_the_optimum():
    noisy = ne.make_problem("hartmann6", noise_std=0.1, seed=2)
    h6 = ne.make_problem("hartmann6")
    result = ne.optimize(noisy, noisy.bounds, budget=100, seed=2)
    assert (result.history.source == "repeat").sum() == 1
    assert "polish" not in set(result.history.source)  # a lucky draw is no place for a Newton step
    observed = result.X[int(np.argmax(result.y))]
    assert h6.regret(result.best_x) < 0.05
    # never worse than the luckiest draw here; often the same point at 100 evaluations, where the search has
    # already sampled densely near the optimum (strictly better: the test of recommend() above)
    assert h6.regret(result.best_x) <= h6.regret(observed)


def _narrow_hill(x):
    a, b = x[0] - 0.37, x[1] - 0.61
    return -np.log1p(40 * (a * a + 3 * b * b + a * b))  # smooth, far from a quadratic beyond its peak


def test_polishing_steps_take_a_smooth_peak_far_below_the_gaussian_process_resolution():
    result = ne.optimize(_narrow_hill, [(0, 1)] * 2, budget=45, seed=0)
    steps = result.history[result.history.source == "polish"]
    assert (steps.y >= steps.best_y).sum() >= 2  # steps that set a new best
    assert -result.best_y < 1e-9


@pytest.mark.slow
def test_without_polishing_steps_expected_improvement_stalls_short_of_the_peak():
    kernel_only = ne.optimize(_narrow_hill, [(0, 1)] * 2, budget=45, seed=0, search={"kernel": {"polish": 0}})
    assert "polish" not in set(kernel_only.history.source)
    assert -kernel_only.best_y > 1e-7
    branin = ne.make_problem("branin")
    polished = ne.optimize(branin, branin.bounds, budget=70, seed=1)
    assert branin.regret(polished.best_x) < 1e-9


def test_standardized_targets_of_values_near_the_float_limit_are_finite():
    y = np.array([8.98e307, -8.98e307, 1e300, 0.0])
    z = standardized(y)
    assert np.isfinite(z).all()
    np.testing.assert_allclose(z, standardized(y / 1e300), rtol=1e-9)
    assert np.isfinite(score_targets(np.array([1.7e308]), y, "standardize")).all()


RESTARTING = {"candidates": 64, "ascent_steps": 5, "until": 60, "restart_from": 20, "restart_after": 8}


def _plateau(x):
    """The design already holds the best value (0.2), so the best never rises afterwards."""
    return min(float(x.sum()), 0.2)


def _rippled(x):
    return _plateau(x) + 0.01 * float(np.sin(20 * x[0]))


def _plateau_run(opt, until, value=_rippled):
    """Ask one point at a time and tell its value until the pool holds ``until`` evaluations."""
    while opt.n_evaluations < until:
        x = opt.ask(1)[0]
        opt.tell(x[None], [value(x)])
    return opt


def _restarts(opt):
    return [e["evaluations"] for e in opt.events if e["event"] == "restart"]


def test_a_stalled_kernel_phase_restarts_from_a_fresh_design_and_then_learns_from_it_alone():
    opt = ne.Optimizer([(0, 1)] * 2, seed=0, search={"kernel": RESTARTING})
    seen = []
    while opt.n_evaluations < 45:
        _plateau_run(opt, opt.n_evaluations + 1, _plateau)
        seen.append(len(opt.proposer.kernel.members._x))  # the data the members were last conditioned on
    restarts = [e for e in opt.events if e["event"] == "restart"]
    # at 20 evaluations, then once the new segment (3 design points + 8 without gain) is long enough
    assert [e["evaluations"] for e in restarts] == [20, 31, 42]
    assert all(e["phase"] == "kernel" for e in restarts)
    history = opt.history()
    design = history[history.evaluation.between(20, 22)]
    assert list(design.source) == ["random"] * 3
    X = opt.pool.x[20:23]
    for d in range(2):  # a Latin hypercube: one point in each third of every dimension
        assert sorted(np.floor(X[:, d] * 3).astype(int)) == [0, 1, 2]
    # after the restart the members learn from the points since it only, not from the 20 before
    assert seen[19] == 19 and seen[23] == 3
    assert opt.proposer.kernel.restarts == 3


def test_a_known_budget_allows_a_restart_only_while_it_leaves_restart_room_evaluations():
    # the plateau of the test above restarts at 20, 31 and 42 when the budget is unknown
    opt = ne.Optimizer([(0, 1)] * 2, seed=0, budget=60, search={"kernel": {**RESTARTING, "restart_room": 30}})
    assert _restarts(_plateau_run(opt, 45, _plateau)) == [20]  # 31 would leave 29


def test_restarts_are_off_when_restart_after_is_0_and_never_come_before_restart_from():
    for kernel in ({"restart_after": 0, "restart_from": 20}, {"restart_after": 8, "restart_from": 100}):
        opt = _plateau_run(ne.Optimizer([(0, 1)] * 2, seed=0, search={"kernel": {**RESTARTING, **kernel}}), 45,
                           _plateau)
        assert not _restarts(opt)
        assert opt.proposer.kernel.origin == 0
    # the plateau that restarts at 20, 31, 42, but noisy (the repeated design point returns another value)
    seen = set()

    def noisy(x):
        value = _plateau(x) - 0.05 * (x.tobytes() in seen)
        seen.add(x.tobytes())
        return value

    opt = _plateau_run(ne.Optimizer([(0, 1)] * 2, seed=0, search={"kernel": RESTARTING}), 45, noisy)
    assert "repeat" in set(opt.history().source) and not _restarts(opt)


def test_more_points_asked_than_a_restart_design_holds_are_random_until_it_is_told():
    opt = _plateau_run(ne.Optimizer([(0, 1)] * 2, seed=0, search={"kernel": RESTARTING}), 20)
    X = opt.ask(6)  # the restart's 3 design points, then 3 more while none of them is told
    assert len(X) == 6 and len(np.unique(X, axis=0)) == 6 and np.all((X >= 0) & (X <= 1))
    opt.tell(X, [0.2] * 6)
    assert _restarts(opt) == [20]
    assert list(opt.history().source[20:26]) == ["random"] * 6
    _plateau_run(opt, 30)  # and the phase goes on from the new segment
    assert opt.history().source.iloc[-1] == "kernel"


def test_a_run_saved_between_restarts_resumes_exactly(tmp_path):
    make = lambda: ne.Optimizer([(0, 1)] * 2, seed=1, search={"kernel": RESTARTING})  # noqa: E731
    whole = _plateau_run(make(), 50)
    part = _plateau_run(make(), 36)
    assert part.proposer.kernel.restarts >= 1  # saved inside a segment after a restart
    part.save(tmp_path / "checkpoint.pt")
    resumed = _plateau_run(ne.Optimizer.load(tmp_path / "checkpoint.pt"), 50)
    assert resumed.proposer.kernel.origin == whole.proposer.kernel.origin > 0
    np.testing.assert_array_equal(resumed.pool.x, whole.pool.x)


def test_a_checkpoint_from_before_restarts_resumes_without_them(tmp_path):
    opt = _plateau_run(ne.Optimizer([(0, 1)] * 2, seed=1, search={"kernel": RESTARTING}), 15)
    opt.save(tmp_path / "checkpoint.pt")
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["config"]["search"]["kernel"]["restart_after"], state["config"]["search"]["kernel"]["restart_from"]
    for key in ("origin", "restarts"):
        del state["proposer"]["state"]["kernel"][key]
    torch.save(state, tmp_path / "checkpoint.pt")
    old = _plateau_run(ne.Optimizer.load(tmp_path / "checkpoint.pt"), 45)
    assert old.cfg.search.kernel.restart_after == 0 and old.proposer.kernel.restarts == 0


@pytest.mark.slow
def test_restarts_take_the_default_out_of_hartmann6s_local_maximum():
    # seed 5: without restarts the kernel phase settles in the local maximum (regret 0.119 at 300 evaluations)
    h6 = ne.make_problem("hartmann6")
    result = ne.optimize(h6, h6.bounds, budget=300, seed=5)
    assert h6.regret(result.best_x) < 0.01
    assert any(e["event"] == "restart" for e in result.lineage)


def test_a_restart_on_a_named_space_proposes_settings_of_that_space():
    space = {"n": ne.Int(1, 8), "codec": ne.Categorical(["lz4", "zstd", "none"]), "w": ne.Float(0.0, 1.0)}
    opt = ne.Optimizer(space, seed=0, search={"kernel": {**RESTARTING, "restart_from": 15}})
    while opt.n_evaluations < 28:
        P = opt.ask(1)
        opt.tell(P, [min(p["w"] + p["n"] / 8, 0.3) for p in P])  # a plateau again
    restarts = _restarts(opt)
    history = opt.history()
    fresh = history[history.source == "random"]
    assert restarts and len(fresh) == len(restarts) * (opt.pool.x.shape[1] + 1)  # dim + 1 of the encoding
    assert set(fresh.codec) <= {"lz4", "zstd", "none"} and all(float(n).is_integer() and 1 <= n <= 8 for n in fresh.n)
