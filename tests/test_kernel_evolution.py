"""The Gaussian-process members' genes and their generations: warps, held-out densities, forks and merges."""

import numpy as np
import pytest
import torch

import nes_ensemble as ne
from nes_ensemble.config import KernelEvolutionConfig
from nes_ensemble.members.kernel_evolution import KernelEvolution, gains
from nes_ensemble.members.kernel_members import KernelMembers
from nes_ensemble.members.targets import standardized, warp_scores, warped


def test_the_warp_is_the_identity_at_power_one_monotone_below_and_goes_on_straight_above_the_best():
    y = np.array([-1000.0, -100.0, -10.0, -1.0, 0.0])
    assert np.allclose(standardized(warped(y, 1.0)), standardized(y))
    for power in (0.0, 0.3, 0.7):
        w = warped(y, power)
        assert np.all(np.diff(w) > 0)
        # the near-best stretched: at power 0 a decade near the best (-10 to -1) weighs about as much as one far
        # from it (-1000 to -100), where the values themselves make it a hundredth
        if power == 0.0:
            assert w[3] - w[2] > 0.25 * (w[1] - w[0])
        above = warped(np.array([1.0, 2.0]), power, top=0.0, span=1000.0)
        assert above[0] > 0 and np.isclose(above[1], 2 * above[0])


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_warp_scores_log_slope_is_the_derivative_of_the_standardized_warp(power):
    reference = np.array([-50.0, -20.0, -3.0, -1.0, -0.5])
    values = np.array([-30.0, -2.0, -0.7])
    t, log_slope = warp_scores(values, reference, power)
    h = 1e-6
    t_up, _ = warp_scores(values + h, reference, power)
    assert np.allclose(np.log((t_up - t) / h), log_slope, atol=1e-4)


def _log_landscape(n, seed):
    """Values spanning four orders of magnitude: what a log-like warp is for."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    return x, -np.exp(6 * np.linalg.norm(x - 0.3, axis=1) ** 2) * 10


def test_a_member_that_warps_like_the_values_gives_new_values_a_higher_density():
    x, y = _log_landscape(60, 0)
    members = KernelMembers(2, 2)
    members.warp = torch.tensor([1.0, 0.0], dtype=torch.float64)
    members.fit(x[:40], members.targets(standardized(y[:40])))
    density = members.log_density(x[40:], y[40:], y[:40]).sum(1)
    assert density[1] > density[0] + 5.0


def _evolved(x, y, generations, seed=0):
    members = KernelMembers(x.shape[1], 1)
    ids = iter(range(100, 10_000))
    evo = KernelEvolution(KernelEvolutionConfig(every=10), seed, 0, lambda n: [next(ids) for _ in range(n)])
    evo.births(members, 0)
    events = []
    for n in range(20, 20 + 10 * generations, 10):
        assert evo.due(n, x.shape[1])
        events += evo.step(members, x[:n], y[:n], n)
    return members, events


def test_generations_move_the_warp_toward_the_log_on_values_that_span_orders_of_magnitude():
    x, y = _log_landscape(80, 1)
    members, events = _evolved(x, y, 6)
    assert float(members.warp[0]) < 0.7
    merges = [e for e in events if e["event"] == "merge"]
    assert len(merges) == 6 and all(e["kind"] == "gp" for e in merges)
    # a merge moves the parent only toward forks that gained on it, weighted by how much, and the whole way only
    # as far as the evidence of the gains goes: weights gain_i / (G + evidence)
    evidence = KernelEvolutionConfig().evidence
    for e in merges:
        gained = [g > 0 for g in e["gains"]]
        assert all((w > 0) == b for w, b in zip(e["weights"], gained))
        expected = np.array(e["gains"]) / (sum(e["gains"]) + evidence) if any(gained) else np.zeros(4)
        assert np.allclose(e["weights"], expected, atol=1e-5)


def test_clipped_gains_let_no_single_evaluation_decide_a_merge():
    parent = torch.zeros(10, dtype=torch.float64)
    lucky = torch.full((10,), -0.5, dtype=torch.float64)
    lucky[3] = 40.0  # one held-out value far outside the parent's spread, the rest slightly worse
    steady = torch.full((10,), 0.3, dtype=torch.float64)
    forks = torch.stack([lucky, steady, torch.full((10,), -torch.inf, dtype=torch.float64)])
    assert gains(forks, parent, 0.0).tolist() == pytest.approx([35.5, 3.0, 0.0])
    assert gains(forks, parent, 1.0).tolist() == pytest.approx([0.0, 3.0, 0.0])


def test_a_generation_whose_forks_all_score_below_the_parent_leaves_its_genes_as_they_were():
    x, y = _log_landscape(30, 2)
    members = KernelMembers(2, 1)
    evo = KernelEvolution(KernelEvolutionConfig(every=10, sigma_warp=0.0, sigma_prior=0.0, sigma_floor=0.0,
                                                switch_family=0.0), 0, 0, lambda n: list(range(n)))
    evo.births(members, 0)
    before = {k: v.clone() for k, v in members.state_dict().items() if k in ("warp", "prior", "floor", "family")}
    events = evo.step(members, x[:30], y[:30], 30)
    merge = events[-1]
    assert merge["weights"] == [0.0] * 4  # identical forks: none scores above the parent
    for k, v in before.items():
        assert torch.equal(members.state_dict()[k], v)


@pytest.mark.slow
def test_a_nes_run_evolves_its_gaussian_process_members_and_sgd_does_not():
    p = ne.make_problem("branin")
    nes = ne.optimize(p, p.bounds, budget=60, seed=0, strategy="nes")
    sgd = ne.optimize(p, p.bounds, budget=60, seed=0, strategy="sgd")
    gp = [e for e in nes.lineage if e.get("kind") == "gp"]
    generations = {e["generation"] for e in gp if e["event"] == "merge"}
    assert len(generations) >= 2
    assert all(np.isfinite(f) for e in gp if e["event"] == "merge" for f in e["fork_fitness"])
    assert not any(e.get("kind") == "gp" for e in sgd.lineage)
    assert not np.array_equal(nes.X, sgd.X)


def test_a_negative_clip_of_the_gains_is_refused_by_name():
    with pytest.raises(ValueError, match=r"evolution.kernel.clip"):
        ne.Optimizer([(0, 1)], evolution={"kernel": {"clip": -1.0}})
