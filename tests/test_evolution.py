"""The population manager does what it says: forks preserve the function, merges follow the NES weights,
and every birth, fork, merge and replacement is an event with consistent ids and generations."""

import math

import numpy as np
import pytest
import torch
from traces import NETWORKS  # the networks from the first round (no kernel phase)

import nes_ensemble as ne
from nes_ensemble.config import EnsembleConfig, EvolutionConfig
from nes_ensemble.members.evolution import fork, merge, network_gains, rank_weights, utilities
from nes_ensemble.members.kernel_evolution import gain_weights
from nes_ensemble.members.population import Population
from nes_ensemble.members.training import OptimizerState


def _population(members=4, dim=3, **kw):
    return Population(dim, EnsembleConfig(members=members, **kw), torch.Generator().manual_seed(0))


def test_utilities_are_the_wierstra_shaping_normalised_to_one():
    u = utilities(4)
    raw = [max(0.0, math.log(3) - math.log(j)) for j in (1, 2, 3, 4)]
    torch.testing.assert_close(u, torch.tensor(raw, dtype=torch.float32) / sum(raw))
    assert float(u.sum()) == pytest.approx(1.0)
    assert u[2] == 0 and u[3] == 0  # the worse half weighs nothing


def test_merge_gives_the_hand_computed_parent():
    pop = _population(members=2, sparsity_min=0.0, sparsity_max=0.0)
    state = OptimizerState.zeros(pop)
    forks, fstate, _ = fork(pop, state, torch.tensor([0]), 3, EvolutionConfig(widen=0.0, sigma_sparsity=0.0),
                            torch.Generator().manual_seed(1))
    forks.theta = forks.theta + torch.randn_like(forks.theta) * forks.mask
    parent_theta, parent_lr = pop.theta[0].clone(), float(pop.lr[0])
    fitness = torch.tensor([-2.0, -1.0, -3.0])  # fork 1 best, then fork 0, then fork 2
    eta = 0.5
    w, best = rank_weights(fitness)
    assert best == 1
    weights = merge(pop, state, 0, forks, fstate, w, eta, best)
    u1 = math.log(2.5) - math.log(1)
    u2 = math.log(2.5) - math.log(2)
    expected_w = torch.tensor([u2, u1, 0.0]) / (u1 + u2)
    torch.testing.assert_close(weights, expected_w)
    by_hand = parent_theta + eta * sum(expected_w[i] * (forks.theta[i] - parent_theta) for i in range(3))
    torch.testing.assert_close(pop.theta[0], by_hand * forks.mask[1])
    log_lr = math.log(parent_lr) + eta * sum(float(expected_w[i]) * (math.log(float(forks.lr[i])) - math.log(parent_lr))
                                             for i in range(3))
    assert float(pop.lr[0]) == pytest.approx(math.exp(log_lr), rel=1e-5)


def test_gains_are_clipped_log_likelihood_ratios_and_only_a_won_generation_moves_the_parent():
    parent = torch.tensor([1.0, 1.0, 1.0, 1.0])  # squared errors: the parent's mean is 1, so a nat is 2 of them
    forks = torch.tensor([[0.0, 0.0, 1.0, 1.0],    # 0.5 + 0.5 nats
                          [9.0, 0.0, 1.0, 1.0],    # -4 (clipped to -1) + 0.5: lost
                          [-3.0, 1.0, 1.0, 1.0]])  # (a squared error cannot be negative; 2 nats, clipped to 1)
    g = network_gains(forks, parent, clip=1.0)
    torch.testing.assert_close(g, torch.tensor([1.0, 0.0, 1.0]))
    torch.testing.assert_close(network_gains(forks, parent, clip=0.0), torch.tensor([1.0, 0.0, 2.0]))
    w, best = gain_weights(g, evidence=1.0)  # G = 2: two thirds of the way, split by gain
    torch.testing.assert_close(w, torch.tensor([1 / 3, 0.0, 1 / 3]))
    assert best == 0
    w, best = gain_weights(torch.tensor([0.1, 0.0, 0.0]), evidence=1.0)  # a tenth of a nat: a small step, and the
    assert float(w.sum()) == pytest.approx(0.1 / 1.1) and best is None  # parent keeps its architecture
    pop = _population(members=2, sparsity_min=0.2, sparsity_max=0.2)
    state = OptimizerState.zeros(pop)
    forks_pop, fstate, _ = fork(pop, state, torch.tensor([0]), 3, EvolutionConfig(widen=0.0, sigma_sparsity=0.1),
                                torch.Generator().manual_seed(1))
    theta, mask = pop.theta[0].clone(), pop.mask[0].clone()
    w, best = gain_weights(torch.zeros(3), evidence=1.0)  # no fork won: the parent stays as it was
    merge(pop, state, 0, forks_pop, fstate, w, 1.0, best)
    torch.testing.assert_close(pop.theta[0], theta)
    w, best = gain_weights(torch.tensor([0.0, 0.2, 0.0]), evidence=1.0)
    merge(pop, state, 0, forks_pop, fstate, w, 1.0, best)
    torch.testing.assert_close(pop.mask[0], mask)  # too little evidence to take a fork's architecture
    torch.testing.assert_close(pop.theta[0], (theta + float(w[1]) * (forks_pop.theta[1] - theta)) * mask)


def test_a_run_with_gain_weights_shows_the_gains_in_its_lineage():
    p = ne.make_problem("branin")
    res = ne.optimize(p, p.bounds, budget=45, seed=3, evolution={"every": 12, "weights": "gain"}, search=NETWORKS,
                      ensemble={"members": 4, "train_steps_initial": 60, "train_steps": 10})
    merges = [e for e in res.lineage if e["event"] == "merge" and e.get("kind") != "gp"]
    assert merges and all(len(e["gains"]) == len(e["weights"]) for e in merges)
    for e in merges:
        total = sum(e["gains"])
        assert sum(e["weights"]) == pytest.approx(total / (total + 1.0), abs=1e-5)
        assert all((g > 0) == (w > 0) for g, w in zip(e["gains"], e["weights"]))


def test_a_fork_that_grows_wider_computes_what_its_parent_computes():
    pop = _population(members=3, widths=[8, 32], depths=[3], sparsity_min=0.1, sparsity_max=0.1)
    pop.width[:] = 8  # every member narrow, with room to grow
    pop.mask = pop.mask * pop.structure(pop.width, pop.width)
    pop.theta = pop.theta * pop.mask
    cfg = EvolutionConfig(widen=1.0, sigma_sparsity=0.0)
    forks, _, wider = fork(pop, OptimizerState.zeros(pop), torch.tensor([0, 1, 2]), 1, cfg,
                           torch.Generator().manual_seed(2))
    assert wider.all() and (forks.width == 16).all()
    x = torch.rand(3, 20, 3)
    torch.testing.assert_close(forks.forward(x), pop.forward(x), rtol=1e-5, atol=1e-6)
    # the new units are alive: the wider fork has more trainable weights than its parent
    assert (forks.mask.sum(1) > pop.mask.sum(1)).all()


def test_sparsity_changes_of_a_fork_keep_its_function():
    pop = _population(members=2, sparsity_min=0.3, sparsity_max=0.3)
    cfg = EvolutionConfig(widen=0.0, sigma_sparsity=0.2)
    forks, _, _ = fork(pop, OptimizerState.zeros(pop), torch.tensor([0, 1]), 4, cfg,
                       torch.Generator().manual_seed(3))
    revived = (forks.mask > 0) & (pop.mask.repeat_interleave(4, 0) == 0)
    assert revived.any()
    assert torch.all(forks.theta[revived] == 0)  # revived weights start at zero


def test_a_nes_run_records_consistent_lineage_and_differs_from_sgd():
    p = ne.make_problem("branin")
    overrides = dict(budget=80, seed=0, ensemble={"members": 4}, evolution={"every": 20, "parents": 2, "children": 3},
                     search=NETWORKS)
    nes = ne.optimize(p, p.bounds, strategy="nes", **overrides)
    sgd = ne.optimize(p, p.bounds, strategy="sgd", **overrides)
    assert sgd.lineage == []
    events = nes.lineage
    births = [e for e in events if e["event"] == "birth"]
    forks = [e for e in events if e["event"] == "fork"]
    merges = [e for e in events if e["event"] == "merge"]
    assert len(births) == 4 and len(forks) >= 6 and len(merges) == len(forks) // 3
    known = {e["id"] for e in births}
    for e in events:
        if e["event"] in ("fork", "replace"):
            assert e["parent"] in known  # a parent exists before its child
            assert e["id"] not in known  # ids are never reused
            known.add(e["id"])
    fork_parent = {e["id"]: e["parent"] for e in forks}
    for m in merges:
        assert len(m["forks"]) == 3 and all(fork_parent[f] == m["id"] for f in m["forks"])
        total = sum(m["gains"])  # the default weights: each fork's share of the gains, times G / (G + evidence)
        assert sum(m["weights"]) == pytest.approx(total / (total + 1.0), abs=1e-5)
        assert m["generation"] >= 1
    assert not np.array_equal(nes.X, sgd.X)  # evolution changes the search


def test_nes_run_is_reproducible_and_resumes_exactly(tmp_path):
    p = ne.make_problem("branin")
    cfg = dict(ensemble={"members": 4}, evolution={"every": 15, "parents": 2, "children": 2}, search=NETWORKS)
    a = ne.Optimizer(p.bounds, config=cfg, seed=5)
    b = ne.Optimizer(p.bounds, config=cfg, seed=5)
    for step in range(6):
        Xa, Xb = a.ask(), b.ask()
        np.testing.assert_array_equal(Xa, Xb)
        a.tell(Xa, p.evaluate(Xa))
        b.tell(Xb, p.evaluate(Xb))
        if step == 2:
            b.save(tmp_path / "ckpt.pt")
            b = ne.Optimizer.load(tmp_path / "ckpt.pt")
    assert any(e["event"] == "merge" for e in a.events)
    assert a.events == b.events
