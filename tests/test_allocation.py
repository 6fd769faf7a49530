"""The population manager's allocation of rounds between the Gaussian-process members and the networks."""

import numpy as np
import pytest

import nes_ensemble as ne
from nes_ensemble.engine.pool import Provenance, SamplePool
from nes_ensemble.members.allocation import Allocation


def _pool(sources, values):
    pool = SamplePool(dim=1)
    pool.add(np.linspace(0, 1, len(values))[:, None], np.array(values, dtype=float),
             [Provenance(s) for s in sources])
    return pool


def test_improvements_and_proposals_are_read_per_kind_from_the_pool():
    pool = _pool(["initial", "kernel", "ascent", "kernel", "cma", "kernel"], [1, 2, 3, 2.5, float("nan"), 4])
    assert Allocation.proposals(pool) == {"gp": 3, "networks": 2}
    assert Allocation.improvements(pool) == {"gp": [True, False, True], "networks": [True]}  # the failed one: none


def test_the_networks_propose_once_they_have_predicted_and_while_their_share_is_below_its_target():
    pool = _pool(["initial"] * 5 + ["kernel"] * 10, list(range(5)) + [0.0] * 10)  # the GP members stuck
    fixed, adaptive = Allocation(False), Allocation(True, 0.1, 0.6)
    assert fixed.choose(pool, gp_active=True) == "gp" and fixed.choose(pool, gp_active=False) == "networks"
    assert adaptive.choose(pool, gp_active=True) == "gp"  # the networks have not shown what they learnt
    adaptive.observe("networks", np.arange(6.0), np.arange(6.0))  # and predicted perfectly
    assert adaptive.target(pool) > 0.5
    assert adaptive.choose(pool, gp_active=True) == "networks"
    busy = _pool(["initial"] * 5 + ["kernel"] * 4 + ["ascent"] * 8, [0.0] * 17)
    assert adaptive.target(busy) <= 0.6
    assert adaptive.choose(busy, gp_active=True) == "gp"  # they had their share: 8 of 12


@pytest.mark.slow
def test_with_a_share_the_networks_propose_before_kernel_until_and_without_one_they_do_not():
    p = ne.make_problem("branin")
    shared = ne.optimize(p, p.bounds, budget=50, seed=1, evolution={"share_max": 0.5})
    fixed = ne.optimize(p, p.bounds, budget=50, seed=1)
    kinds = lambda r: {s for s in r.history["source"]}  # noqa: E731
    assert {"kernel", "ascent"} <= kinds(shared)
    assert "ascent" not in kinds(fixed) and "kernel" in kinds(fixed)
