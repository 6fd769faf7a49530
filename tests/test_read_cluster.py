"""The read-cluster simulator: conservation, the reference policies' order, replay, a live objective."""

import numpy as np
import pytest

import nes_ensemble as ne
from nes_ensemble.read_cluster import ClusterConfig, LiveObjective, Policy, ReadCluster, measure


@pytest.mark.parametrize("workload", ["steady", "bursty", "hotspot"])
def test_every_request_issued_is_served_or_still_queued(workload):
    cluster = ReadCluster(ClusterConfig(workload=workload), seed=3)
    lat = cluster.run(Policy(np.array([1.0, 0.2, 0.3, 0.1, -1.0])), 300)
    assert cluster.issued > 10000
    assert cluster.issued == cluster.served + cluster.queue_lengths().sum()
    assert len(lat) == cluster.served and lat.min() >= 1


def test_the_perfectly_informed_policy_beats_random_and_delay_hurts():
    informed = measure(None, "informed", range(2), windows=3).mean()
    delayed = measure(None, "least_queue", range(2), windows=3).mean()
    random = measure(None, "random", range(2), windows=3).mean()
    assert informed < 0.8 * random
    assert informed < delayed


def test_the_same_seed_replays_the_same_traffic():
    a, b = ReadCluster(seed=5), ReadCluster(seed=5)
    x = np.array([0.5, 0.0, 0.5, 0.2, -0.5])
    np.testing.assert_array_equal(a.run(Policy(x, seed=1), 200), b.run(Policy(x, seed=1), 200))
    assert not np.array_equal(ReadCluster(seed=6).run(Policy(x, seed=1), 200), a.run(Policy(x, seed=1), 200))


def test_the_live_objective_keeps_its_state_and_plugs_into_optimize():
    f = LiveObjective(seed=0)
    before = f.cluster.tick
    y1, y2 = f(np.array([1.0, 0, 0, 0, -2])), f(np.array([1.0, 0, 0, 0, -2]))
    assert f.cluster.tick == before + 2 * f.cluster.cfg.window and y1 != y2  # one window each, history matters
    p = ne.make_problem("read_cluster", seed=1)
    result = ne.optimize(p, p.bounds, budget=25, seed=0, ensemble={"members": 3})
    assert len(result.X) == 25 and np.all(result.X >= p.bounds[:, 0]) and np.all(result.X <= p.bounds[:, 1])
