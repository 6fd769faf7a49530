import numpy as np
from traces import NETWORKS  # the networks from the first round (no kernel phase)

import nes_ensemble as ne
from nes_ensemble.proposers.search import quadratic_step


def _bowl(X, top=(0.3, 0.7, 0.55)):
    d = np.asarray(X) - np.asarray(top)
    return -(d ** 2 * [1.0, 3.0, 10.0]).sum(-1) + 0.5 * d[..., 0] * d[..., 1]


def test_quadratic_step_lands_on_the_maximum_of_a_quadratic():
    X = np.random.default_rng(0).random((40, 3))
    y = _bowl(X)
    x = quadratic_step(X, y, X[np.argmax(y)])
    np.testing.assert_allclose(x, [0.3, 0.7, 0.55], atol=1e-9)


def test_quadratic_step_stays_inside_the_box_its_neighbours_span():
    rng = np.random.default_rng(1)
    center = np.array([0.8, 0.2, 0.5])
    X = center + 0.01 * (2 * rng.random((40, 3)) - 1)  # a small cluster far from the top
    x = quadratic_step(X, _bowl(X), center)
    reach = np.linalg.norm(X - center, axis=1).max()
    assert np.all(np.abs(x - center) <= reach + 1e-12)
    assert _bowl(x) > _bowl(X).max()  # and it still moves uphill


def test_quadratic_step_needs_enough_points():
    X = np.random.default_rng(2).random((10, 3))  # a quadratic in 3-D has 10 terms; the fit wants twice that
    assert quadratic_step(X, _bowl(X), X[0]) is None


def test_polish_finds_a_smooth_maximum_far_below_the_networks_resolution():
    small = {"ensemble": {"members": 3, "train_steps_initial": 60, "train_steps": 10}}

    def fn(x):
        return float(_bowl(x))

    polished = ne.optimize(fn, [(0, 1)] * 3, budget=60, seed=0, search=NETWORKS, **small)
    plain = ne.optimize(fn, [(0, 1)] * 3, budget=60, seed=0, search={**NETWORKS, "polish": {"enabled": False}},
                        **small)
    assert "quadratic" in set(polished.history["source"])
    assert polished.best_y > -1e-10
    assert plain.best_y < -1e-6  # the networks and the Gaussian steps alone stop well short of it


def test_quadratic_step_declines_when_noise_swamps_the_fit():
    rng = np.random.default_rng(3)
    X = rng.random((60, 3))
    noisy = _bowl(X) + 0.5 * rng.standard_normal(60)
    assert quadratic_step(X, noisy, X[np.argmax(noisy)]) is None
    assert quadratic_step(X, _bowl(X), X[np.argmax(noisy)]) is not None
