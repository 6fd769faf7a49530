"""The CMA-ES over the networks' rounds: it learns a landscape's shape, and the networks' points steer it."""

import numpy as np
import pytest
import torch

import nes_ensemble as ne
from nes_ensemble.proposers.cma_steps import CMASteps


def _ellipsoid(dim=6, condition=100.0, seed=0):
    """A rotated ellipsoid with its maximum (0) at c, and its flattest direction."""
    rng = np.random.default_rng(seed)
    R, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    scales = condition ** (np.arange(dim) / (dim - 1))
    H = R @ np.diag(scales) @ R.T
    c = rng.uniform(0.3, 0.7, dim)
    return (lambda X: -np.einsum("ni,ij,nj->n", X - c, H, X - c)), c, R[:, 0]


def test_the_strategy_alone_finds_a_rotated_ellipsoids_maximum_and_learns_its_shape():
    f, c, flattest = _ellipsoid()
    es, rng = CMASteps(6, 10, np.full(6, 0.5), 0.2), np.random.default_rng(1)
    for _ in range(150):
        X = es.ask(10, rng)
        es.tell(X, f(X))
    assert np.linalg.norm(es.mean - c) < 1e-4
    values, vectors = np.linalg.eigh(es.C)
    assert values[-1] / values[0] > 10  # an isotropic step would stay at 1
    assert abs(vectors[:, -1] @ flattest) > 0.9  # the widest spread lies along the flattest direction


def test_a_far_external_point_steers_the_mean_without_inflating_the_step():
    rng = np.random.default_rng(0)
    es = CMASteps(4, 8, np.full(4, 0.5), 0.01)
    X = es.ask(7, rng)
    far = np.full(4, 0.9)  # 40 steps away, and the best of the generation
    es.tell(np.concatenate([X, far[None]]), np.concatenate([np.zeros(7), [1.0]]))
    moved = es.mean - 0.5
    assert moved @ (far - 0.5) > 0  # toward it
    assert np.linalg.norm(moved) < 0.01 * es.clip_length  # but by no more than a typical step
    assert es.sigma < 0.02


def test_a_generation_is_told_in_parts_and_a_saved_strategy_continues_exactly():
    f, _, _ = _ellipsoid(3)
    a, rng_a = CMASteps(3, 6, np.full(3, 0.5), 0.2), np.random.default_rng(2)
    for _ in range(5):
        X = a.ask(6, rng_a)
        a.tell(X[:4], f(X[:4]))  # a generation updates once its sixth point is in
        assert a.generation == _ and len(a.told_y) == 4
        a.tell(X[4:], f(X[4:]))
    a.tell(X[:2], f(X[:2]))
    b = CMASteps.from_state(3, {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in a.state_dict().items()})
    rng_b = np.random.default_rng(3)
    rng_a = np.random.default_rng(3)
    for es, rng in ((a, rng_a), (b, rng_b)):
        for _ in range(4):
            X = es.ask(6, rng)
            es.tell(X, f(X))
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.C, b.C)
    assert a.sigma == b.sigma and a.generation == b.generation == 9


SMALL = {"members": 4, "widths": [16], "train_steps_initial": 40, "train_steps": 8}
NETWORKS = {"kernel": {"until": 0}, "repeat": 0, "proposals_per_round": 3, "gaussian_per_round": 3}


def _run(opt, until):
    while opt.n_evaluations < until:
        X = opt.ask()
        opt.tell(X, [-float(((x - 0.3) ** 2).sum()) for x in X])
    return opt


def test_the_refinements_of_the_networks_rounds_are_the_strategys_samples_and_its_mean(tmp_path):
    make = lambda: ne.Optimizer([(0, 1)] * 3, seed=0, ensemble=SMALL, search=NETWORKS)  # noqa: E731
    opt = _run(make(), 40)
    history = opt.history()
    rounds = history[history.source != "initial"]
    assert set(rounds.source) <= {"ascent", "quadratic", "cma"} and "cma" in set(rounds.source)
    es = opt.proposer.cma
    assert es.popsize == 6 and es.generation >= 3  # a generation a round: the ascents are told to it too
    last = rounds[rounds["round"] == rounds["round"].max()]
    final_mean = opt.proposer.cma.mean.copy()
    assert last.source.iloc[-1] == "cma"
    # a run saved between rounds resumes exactly, the strategy included
    part = _run(make(), 28)
    part.save(tmp_path / "checkpoint.pt")
    resumed = _run(ne.Optimizer.load(tmp_path / "checkpoint.pt"), 40)
    np.testing.assert_array_equal(resumed.pool.x, opt.pool.x)
    np.testing.assert_array_equal(resumed.proposer.cma.mean, final_mean)


def test_the_strategys_mean_is_proposed_each_round():
    opt = _run(ne.Optimizer([(0, 1)] * 3, seed=0, ensemble=SMALL, search=NETWORKS), 28)
    mean = np.clip(opt.proposer.cma.mean, 0, 1)
    X = opt.ask()
    np.testing.assert_allclose(X[-1], mean)


def test_with_evaluations_in_flight_the_strategy_is_told_as_they_return_and_no_point_comes_twice():
    opt = ne.Optimizer([(0, 1)] * 3, seed=1, ensemble=SMALL, search=NETWORKS)
    f = lambda x: -float(((x - 0.3) ** 2).sum())  # noqa: E731
    flight = list(opt.ask(4))
    while opt.n_evaluations < 60:
        x = flight.pop(0)
        opt.tell(x[None], [f(x)])
        flight.append(opt.ask(1)[0])
    assert "cma" in set(opt.history().source) and opt.proposer.cma.generation >= 3
    assert len(np.unique(opt.pool.x, axis=0)) == len(opt.pool.x)


def test_off_the_refinements_are_gaussian_steps_and_a_checkpoint_from_before_resumes_without_it(tmp_path):
    opt = _run(ne.Optimizer([(0, 1)] * 3, seed=0, ensemble=SMALL, search={**NETWORKS, "cma": {"enabled": False}}),
               30)
    assert "cma" not in set(opt.history().source) and opt.proposer.cma is None
    opt = _run(ne.Optimizer([(0, 1)] * 3, seed=0, ensemble=SMALL, search=NETWORKS), 24)
    opt.save(tmp_path / "checkpoint.pt")
    saved = opt.n_evaluations
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    del state["config"]["search"]["cma"]
    state["proposer"]["state"].pop("cma", None)
    torch.save(state, tmp_path / "checkpoint.pt")
    old = _run(ne.Optimizer.load(tmp_path / "checkpoint.pt"), 40)
    assert not old.cfg.search.cma.enabled and "cma" not in set(old.history().source[saved:])


def test_a_noisy_objective_keeps_the_gaussian_refinements():
    noise = np.random.default_rng(0)
    opt = ne.Optimizer([(0, 1)] * 3, seed=0, ensemble=SMALL, search={**NETWORKS, "repeat": 1})
    while opt.n_evaluations < 40:
        X = opt.ask()
        opt.tell(X, [-float(((x - 0.3) ** 2).sum()) + 0.01 * noise.standard_normal() for x in X])
    sources = set(opt.history().source)
    assert "repeat" in sources and "gaussian" in sources and "cma" not in sources


def test_a_step_size_outside_the_unit_cube_is_refused_by_name():
    with pytest.raises(ValueError, match="search.cma.sigma"):
        ne.Optimizer([(0, 1)] * 2, search={"cma": {"sigma": 0.0}})


@pytest.mark.slow
def test_the_default_beats_cma_es_alone_on_ackley20_at_1000_evaluations():
    f = ne.make_problem("ackley", 20)
    result = ne.optimize(f, f.bounds, budget=1000, seed=0)
    assert f.regret(result.best_x) < 2.09  # CMA-ES's median over seeds 0-2 (experiments/results/large_budget_clip.md)
