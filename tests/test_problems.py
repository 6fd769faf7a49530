import numpy as np
import pytest

from nes_ensemble.problems import PROBLEMS, check_bounds, from_callable, import_function, make_problem


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_known_optimum_is_the_maximum(name):
    problem = make_problem(name, dim=0 if name in ("hartmann6", "branin") else 4)
    at_optimum = problem.true_value(problem.optimizers)
    np.testing.assert_allclose(at_optimum, problem.optimum_value, atol=1e-4)
    rng = np.random.default_rng(0)
    lo, hi = problem.bounds[:, 0], problem.bounds[:, 1]
    samples = problem.true_value(lo + rng.random((5000, problem.dim)) * (hi - lo))
    assert samples.max() <= problem.optimum_value + 1e-9
    assert problem.regret(problem.optimizers[0]) == pytest.approx(0.0, abs=1e-4)
    assert problem.distance(problem.optimizers[0]) == pytest.approx(0.0, abs=1e-12)


def test_hartmann6_value_and_local_maximum():
    h6 = make_problem("hartmann6")
    assert h6.optimum_value == pytest.approx(3.32237, abs=1e-5)
    assert h6.dim == 6 and np.all(h6.bounds == [[0, 1]] * 6)
    # the well-known local maximum near 3.2 is a trap, not the optimum
    local = np.array([0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381])
    assert 3.0 < h6.true_value(local)[0] < h6.optimum_value - 0.1


def test_noise_wrapper_is_seeded_and_unbiased():
    a = make_problem("branin", noise_std=0.5, seed=3)
    b = make_problem("branin", noise_std=0.5, seed=3)
    x = np.tile(a.optimizers[:1], (4000, 1))
    ya, yb = a.evaluate(x), b.evaluate(x)
    np.testing.assert_array_equal(ya, yb)
    assert abs(ya.mean() - a.optimum_value) < 0.05 and abs(ya.std() - 0.5) < 0.05
    assert a.regret(a.optimizers[0]) == pytest.approx(0.0, abs=1e-6)  # regret is on the true function


@pytest.mark.parametrize("bounds, words", [
    ([[0, 1], [2, 1]], "bounds[1]"),
    ([[0, np.inf]], "finite"),
    ([[0, 1, 2]], "pair"),
    ("abc", "pairs"),
    ([], "pair"),
    ([[0, 0, 0], [1, 1, 1]], "transpose"),  # [lows, highs]: the hint names the fix
    ([[0, 0], [1, 1]], "transpose"),
])
def test_bad_bounds_are_named(bounds, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
        check_bounds(bounds)


def test_reversed_bounds_get_no_transpose_hint():
    with pytest.raises(ValueError) as err:
        check_bounds([[0, 1], [1, 0]])
    assert "transpose" not in str(err.value)


def test_callable_problem_from_import_path():
    fn = import_function("math.hypot")
    problem = from_callable(lambda x: fn(*x), [[-1, 1], [-1, 1]], direction="minimize", optimum=0.0)
    assert problem(np.array([0.6, 0.8])) == pytest.approx(-1.0)
    assert problem.regret(np.array([0.0, 0.0])) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no attribute 'nope'"):
        import_function("math.nope")
    with pytest.raises(ValueError, match="cannot import"):
        import_function("no_such_module_xyz.f")
