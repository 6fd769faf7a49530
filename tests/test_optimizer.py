import numpy as np
import pytest
from traces import NETWORKS  # the networks from the first round (no kernel phase): for tests of the networks

import nes_ensemble as ne

SMALL = {"ensemble": {"members": 3, "train_steps_initial": 60, "train_steps": 10}}


def sphere(x):
    return -float(np.sum((np.asarray(x) - 0.3) ** 2))


def test_optimize_calls_fn_exactly_budget_times_and_never_outside_bounds():
    bounds = [(-2.0, 1.0), (5.0, 6.0), (0.0, 1e-3)]
    seen = []

    def fn(x):
        seen.append(np.array(x))
        return sphere(x)

    result = ne.optimize(fn, bounds, budget=37, seed=1, **SMALL)
    X = np.array(seen)
    assert len(seen) == 37 and result.X.shape == (37, 3) and result.y.shape == (37,)
    lo, hi = np.array(bounds).T
    assert np.all(X >= lo) and np.all(X <= hi)
    np.testing.assert_array_equal(result.X, X)
    assert result.best_y == pytest.approx(max(sphere(x) for x in X))
    assert list(result.history["evaluation"]) == list(range(37))
    sources = {"initial", "repeat", "kernel", "polish", "ascent", "gaussian", "quadratic"}
    assert set(result.history["source"]) <= sources


@pytest.mark.slow  # (suite time)
def test_batched_fn_and_minimize():
    def batched(X):
        return np.sum((X - 0.25) ** 2, axis=1)

    result = ne.optimize(batched, [(0, 1)] * 2, budget=60, seed=0, batched=True, direction="minimize", **SMALL)
    assert result.best_y == pytest.approx(result.y.min())
    assert result.best_y < 1e-2


@pytest.mark.slow
def test_same_seed_same_result_and_other_seed_differs():
    a = ne.optimize(sphere, [(0, 1)] * 2, budget=40, seed=5, **SMALL)
    b = ne.optimize(sphere, [(0, 1)] * 2, budget=40, seed=5, **SMALL)
    c = ne.optimize(sphere, [(0, 1)] * 2, budget=40, seed=6, **SMALL)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.array_equal(a.X, c.X)


def test_seed_none_draws_a_seed_that_repeats_the_run():
    a = ne.Optimizer([(0, 1)] * 2, config=SMALL, seed=None)
    b = ne.Optimizer([(0, 1)] * 2, config=SMALL, seed=a.seed)
    np.testing.assert_array_equal(a.ask(5), b.ask(5))


def test_ask_again_before_tell_gives_new_points_and_tell_in_any_order():
    opt = ne.Optimizer([(0, 1)] * 2, config=SMALL, seed=0)
    first = opt.ask(3)
    second = opt.ask(4)
    both = np.concatenate([first, second])
    assert len({tuple(x) for x in both}) == 7
    order = [5, 0, 6, 2, 1, 4, 3]
    opt.tell(both[order], [sphere(x) for x in both[order]])
    assert opt.n_evaluations == 7 and not opt.ledger.pending
    x, y = opt.best
    assert y == pytest.approx(max(sphere(p) for p in both))


def test_free_workers_get_more_design_points_while_the_initial_design_is_out():
    from nes_ensemble.proposers.search import initial_design

    opt = ne.Optimizer([(0, 1)] * 3, config={"search": {**NETWORKS, "n_init": 8}}, seed=0)
    X = opt.ask(8)
    opt.tell(X[:6], -np.sum(X[:6] ** 2, 1))  # two design points still pending
    x = opt.ask(1)[0]
    assert opt.ledger.pending[-1][1].provenance.source == "initial"
    np.testing.assert_allclose(x, initial_design(9, 3, "sobol", 0)[-1])  # the design's ninth point
    opt.tell(np.vstack([X[6:], x]), -np.sum(np.vstack([X[6:], x]) ** 2, 1))
    opt.ask(1)
    assert opt.ledger.pending[-1][1].provenance.source in ("ascent", "gaussian")  # all told: the networks plan


def test_with_evaluations_always_in_flight_the_design_still_ends():
    # three in flight and told oldest first, as a Ray pool returns them one by one: some design point is
    # always pending, yet once the design is told the networks plan (it grows by at most 2 points)
    opt = ne.Optimizer([(0, 1)] * 2, seed=0, config={"search": {**NETWORKS, "n_init": 8}, **SMALL})
    flight = list(opt.ask(3))
    for _ in range(30):
        x = flight.pop(0)
        opt.tell(x[None], [sphere(x)])
        flight.append(opt.ask(1)[0])
    sources = opt.history().source
    assert 8 <= (sources == "initial").sum() <= 10 and (sources == "ascent").sum() > 5


def test_nan_marks_a_failed_evaluation_that_is_kept_but_not_trained_on():
    opt = ne.Optimizer([(0, 1)] * 2, config=SMALL, seed=0)
    for _ in range(15):
        X = opt.ask(2)
        opt.tell(X, [np.nan, sphere(X[1])])
    hist = opt.history()
    assert (hist["status"] == "failed").sum() == 15 and len(hist) == 30
    assert np.isfinite(opt.best[1])
    assert opt.proposer.ensemble.sample_weights[:, np.isnan(opt.pool.y)].sum() == 0


@pytest.mark.parametrize("call, words", [
    (lambda o, X: o.tell(X[:, :1], [1.0, 2.0]), "columns"),
    (lambda o, X: o.tell(X, [1.0]), "2 points but 1 values"),
    (lambda o, X: o.tell(X + 2.0, [1.0, 2.0]), "outside the bounds"),
    (lambda o, X: o.ask(0), "positive integer"),
])
def test_bad_tell_and_ask_are_named(call, words):
    opt = ne.Optimizer([(0, 1)] * 2, config=SMALL, seed=0)
    X = opt.ask(2)
    with pytest.raises(ValueError, match=words):
        call(opt, X)


def test_unknown_or_mistyped_config_keys_fail_with_their_name():
    with pytest.raises(ValueError, match="serch"):
        ne.Optimizer([(0, 1)], config={"serch": {"mode": "original"}})
    with pytest.raises(ValueError, match="membres"):
        ne.Optimizer([(0, 1)], ensemble={"membres": 3})
    with pytest.raises(ValueError, match="members"):
        ne.Optimizer([(0, 1)], ensemble__members="many")
    with pytest.raises(ValueError, match="search.mode"):
        ne.Optimizer([(0, 1)], search__mode="sideways")
    with pytest.raises(ValueError, match="strategy"):
        ne.optimize(sphere, [(0, 1)], budget=5, strategy="magic")


def test_search_keys_of_the_previous_version_work_with_a_warning_that_names_the_new_key():
    with pytest.warns(FutureWarning, match="search.basins is now search.regions.basins"):
        old = ne.Optimizer([(0, 1)], search={"basins": 2, "polish": False, "ascent_lr": 0.01})
    new = ne.Optimizer([(0, 1)], search={"regions": {"basins": 2}, "polish": {"enabled": False},
                                         "ascent": {"lr": 0.01}})
    assert old.cfg == new.cfg
    with pytest.raises(ValueError, match="search.regions.until"):
        ne.Optimizer([(0, 1)], search__regions__until=1.5)
    with pytest.raises(ValueError, match="basin"):
        ne.Optimizer([(0, 1)], search={"regions": {"basin": 2}})


def test_save_and_load_continue_exactly_where_it_stopped(tmp_path):
    def drive(opt, rounds):
        for _ in range(rounds):
            X = opt.ask()
            opt.tell(X, [sphere(x) for x in X])

    straight = ne.Optimizer([(0, 1)] * 3, config=SMALL, seed=2)
    drive(straight, 6)

    first = ne.Optimizer([(0, 1)] * 3, config=SMALL, seed=2)
    drive(first, 3)
    first.save(tmp_path / "opt.pt")
    resumed = ne.Optimizer.load(tmp_path / "opt.pt")
    drive(resumed, 3)
    np.testing.assert_array_equal(resumed.pool.x, straight.pool.x)
    np.testing.assert_array_equal(resumed.pool.y, straight.pool.y)


def test_original_scheme_evaluates_every_ascent_step():
    result = ne.optimize(sphere, [(0, 1)] * 2, budget=80, seed=0,
                         search={"mode": "original", "n_init": 20, "original": {"gaussian": 2}}, **SMALL)
    sources = result.history["source"].value_counts()
    assert sources["original"] > 0 and len(result.y) == 80
    hist = result.history
    assert result.best_y > hist[hist.source == "initial"]["y"].max()
    steps = hist[hist.source == "original"]
    first = steps[(steps.member == steps.member.iloc[0]) & (steps.sibling == steps.sibling.iloc[0])]
    gaps = np.linalg.norm(np.diff(first[["x0", "x1"]].to_numpy(), axis=0), axis=1)
    np.testing.assert_allclose(gaps, 0.001, rtol=1e-3)  # one fixed-size step per evaluation


@pytest.mark.slow
def test_finds_hartmann6_optimum_on_a_fixed_seed():
    h6 = ne.make_problem("hartmann6")
    result = ne.optimize(h6, h6.bounds, budget=300, seed=1)
    assert h6.regret(result.best_x) < 0.01
    assert h6.distance(result.best_x) < 0.05


@pytest.mark.slow
def test_hartmann6_median_regret_over_five_seeds():
    """The headline check with fewer seeds (experiments/hartmann_benchmark.py runs ten)."""
    h6 = ne.make_problem("hartmann6")
    regrets = [h6.regret(ne.optimize(h6, h6.bounds, budget=300, seed=s).best_x) for s in range(5)]
    assert np.median(regrets) < 0.01, regrets


@pytest.mark.slow
def test_noisy_branin_gets_close_to_a_global_optimum():
    branin = ne.make_problem("branin", noise_std=0.1, seed=0)
    result = ne.optimize(branin, branin.bounds, budget=120, seed=0)
    assert branin.distance(result.best_x) < 0.5


def test_restart_leaves_a_stagnant_basin_and_proposes_outside_it():
    result = ne.optimize(sphere, [(0, 1)] * 2, budget=120, seed=0,
                         search={**NETWORKS, "restarts": {"patience": 2, "radius": 0.1}}, **SMALL)
    restarts = [e for e in result.lineage if e["event"] == "restart"]
    assert restarts, "a converged search on a sphere must stagnate and restart"
    basin = np.array(restarts[0]["basin"])
    after = result.history.iloc[restarts[0]["evaluations"]:]
    moved = after[after.source.isin(["ascent", "random"])]
    assert len(moved) > 0
    distance = np.linalg.norm(moved[["x0", "x1"]].to_numpy() - basin, axis=1)
    assert distance.min() > 0.1 * np.sqrt(2)
    assert len(result.y) == 120


@pytest.mark.slow
def test_a_runner_up_region_climbs_to_the_global_basin_that_the_best_design_point_misses():
    """Hartmann-6, seed 19: the best point of the initial design lies in the local maximum's basin, and
    the networks alone end there; with a runner-up region (search.regions.basins=2) the region's own members
    climb from the best design point apart from it, reach the global basin and take the lead."""
    h6 = ne.make_problem("hartmann6")
    single = ne.optimize(h6, h6.bounds, budget=300, seed=19, search=NETWORKS)
    regions = ne.optimize(h6, h6.bounds, budget=300, seed=19,
                          search={**NETWORKS, "regions": {"basins": 2, "share": 0.4}})
    assert h6.regret(single.best_x) > 0.1
    assert h6.regret(regions.best_x) < 0.01
    owners = regions.history[regions.history.member >= 6]  # members 6..9 climb the runner-up region
    assert (owners.source == "quadratic").any() or (owners.source == "gaussian").any()


def two_peaks(x):
    x = np.asarray(x)
    return float(np.exp(-30 * np.sum((x - 0.25) ** 2)) + 0.8 * np.exp(-30 * np.sum((x - 0.75) ** 2)))


def last_region_refinement(regions: dict) -> int:
    """Index of the last evaluation that refines the runner-up region (its owner, member 3, proposes it)."""
    small = {"ensemble": {"members": 4, "train_steps_initial": 40, "train_steps": 5}}
    result = ne.optimize(two_peaks, [(0, 1)] * 2, budget=120, seed=0,
                         search={**NETWORKS, "regions": {"basins": 2, "share": 0.25, **regions}}, **small)
    h = result.history.reset_index(drop=True)
    owned = h[(h.member == 3) & h.source.isin(["gaussian", "quadratic"])]
    assert len(owned) > 0
    return int(owned.index.max())


def test_runner_up_regions_close_at_regions_until():
    """With search.regions.until=0.5 the region's refinements stop once half the budget is evaluated;
    without it they go on to the end."""
    assert last_region_refinement({"until": 0.5}) < 60 <= last_region_refinement({})


def test_a_runner_up_region_that_stops_gaining_closes():
    """search.regions.patience=2: the region on the lower peak climbs it, stops gaining and closes, so its
    refinements end well before the budget does (they run to the end without it)."""
    assert last_region_refinement({"patience": 2}) < 100 <= last_region_refinement({})


def test_a_round_of_a_large_population_makes_at_most_proposals_per_round_ascent_proposals():
    # 30 members proposing one point each made rounds of 34, too few of them polishing steps
    opt = ne.Optimizer([(0, 1)] * 2, seed=0, config={"ensemble": {"members": 12, "train_steps_initial": 20,
                                                                  "train_steps": 5}, "search": NETWORKS})
    f = lambda X: -np.sum((X - 0.3) ** 2, axis=1)  # noqa: E731
    X = opt.ask()
    opt.tell(X, f(X))
    proposers = set()
    for _ in range(2):
        X = opt.ask()
        opt.tell(X, f(X))
        rows = opt.history().tail(len(X))
        ascents = rows[rows.source == "ascent"]
        assert len(ascents) == 10
        proposers |= set(ascents.member)
    assert len(proposers) == 12  # members take turns


def test_a_short_budget_makes_smaller_rounds_and_a_long_one_keeps_the_configured_size():
    # Hartmann-6 at 60: 15 design points leave 45 evaluations, three rounds of 10 + 4 at most
    net = {"search": NETWORKS}
    assert ne.Optimizer([(0, 1)] * 6, seed=0, budget=60, **net).proposer.round_size() == (3, 1)
    assert ne.Optimizer([(0, 1)] * 6, seed=0, budget=300, **net).proposer.round_size() == (10, 4)
    assert ne.Optimizer([(0, 1)] * 6, seed=0, budget=60,
                        search={**NETWORKS, "min_rounds": 0}).proposer.round_size() == (10, 4)
    assert ne.Optimizer([(0, 1)] * 6, seed=0, **net).proposer.round_size() == (10, 4)  # budget unknown (ask / tell)
    # after the default kernel phase (150 evaluations): 150 left at 300, rounds of the configured size
    assert ne.Optimizer([(0, 1)] * 6, seed=0, budget=300).proposer.round_size() == (10, 4)
    assert ne.Optimizer([(0, 1)] * 6, seed=0, budget=250).proposer.round_size() == (7, 3)
    result = ne.optimize(lambda x: -float(np.sum((x - 0.3) ** 2)), [(0, 1)] * 6, budget=60, seed=0, **net)
    rounds = result.history[result.history.source != "initial"].groupby("round").size()
    assert rounds.max() == 4 and len(rounds) >= 10


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_ascent_radius_holds_each_climb_near_its_start_and_a_short_run_has_one_by_default():
    f = lambda X: -np.sum((X - 0.9) ** 2, axis=1)  # noqa: E731  (the optimum far from most starts)
    cases = [({"search": {"ascent": {"radius": 0.03}}}, 0.03, True), ({}, 0.0, False),
             ({"budget": 40}, 0.05, True),  # rounds shrink: search.ascent.short_radius (0.05) holds them
             ({"budget": 300}, 0.0, False), ({"budget": 40, "search": {"ascent": {"short_radius": 0.0}}}, 0.0, False)]
    for config, radius, inside in cases:
        opt = ne.Optimizer([(0, 1)] * 3, seed=0, **{**config, "search": {**NETWORKS, **config.get("search", {})}})
        X = opt.ask()
        far: list[float] = []
        for _ in range(4):  # a few rounds, so that some ascents start from a sibling's best point
            opt.tell(X, f(X))
            X = opt.ask()
            bests, _, _ = opt.proposer.sibling_bests(opt.pool)  # this round climbed from these (nothing told since)
            far += [np.abs(x - bests[q.provenance.sibling]).max() for x, q in opt.ledger.pending
                    if q.provenance.source == "ascent" and q.provenance.sibling >= 0]
        assert far
        assert (max(far) <= radius + 1e-6) == inside


def test_optimize_runs_torch_on_one_thread_unless_told_and_restores_the_setting():
    import torch

    before = torch.get_num_threads()
    seen = []

    def fn(x):
        seen.append(torch.get_num_threads())
        return sphere(x)

    torch.set_num_threads(2)
    try:
        ne.optimize(fn, [(0, 1)] * 2, budget=12, seed=0, **SMALL)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        ne.optimize(fn, [(0, 1)] * 2, budget=12, seed=0, threads=None, **SMALL)
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(before)


def test_a_callback_stops_the_run_and_optimize_returns_what_was_evaluated(capsys):
    def enough(opt):
        if opt.metrics()["best_y"] > -0.05:
            opt.stop()

    result = ne.optimize(lambda x: -float(np.sum((x - 0.3) ** 2)), [(0, 1)] * 2, budget=200, seed=0,
                         callback=enough, progress=True, ensemble={"members": 3})
    assert 10 <= len(result.y) < 200 and result.best_y > -0.05
    assert "eval" in capsys.readouterr().err  # the progress bar


def test_a_stopped_parallel_run_tells_what_was_in_flight():
    seen = []

    def stop_at_ten(opt):
        seen.append(opt.n_evaluations)
        if opt.n_evaluations >= 10:
            opt.stop()

    result = ne.optimize(lambda x: float(np.sum(x)), [(0, 1)] * 2, budget=60, seed=0, evaluator="processes",
                         n_workers=2, callback=stop_at_ten, ensemble={"members": 3})
    assert 10 <= len(result.y) <= 13 and (result.history.status == "ok").all()
