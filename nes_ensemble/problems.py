"""Objective functions in a box, maximized, each carrying its own known optimum.

A ``Problem`` maps a batch of points in its native bounds to values (``evaluate(X [m, n]) -> [m]``).
Classic minimization benchmarks are negated, so larger is always better and
``regret = optimum_value - true value at the best point``.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .space import Space, check_bounds


@dataclass
class Problem:
    """A maximization problem: batched function, bounds [n, 2], and its optimum where known."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]  # [m, n] -> [m], noise-free
    bounds: np.ndarray
    optimum_value: float | None = None
    optimizers: np.ndarray | None = None  # [j, n]: every known maximizer
    noise_std: float = 0.0
    sign: float = 1.0  # -1 when the objective is minimized (a user's, or a test function's): fn returns its negation
    space: Any = None  # a named Space: fn then takes its encoded points (bounds are its unit cube)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0), repr=False)

    @property
    def dim(self) -> int:
        """The number of dimensions."""
        return self.bounds.shape[0]

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Observed values at x [m, n] (with noise if the problem is noisy)."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        y = np.asarray(self.fn(x), dtype=float).reshape(-1)
        if self.noise_std > 0:
            y = y + self.rng.normal(0.0, self.noise_std, size=y.shape)
        return y

    def __call__(self, x: np.ndarray) -> float:
        """One point x [n] -> float, the signature ``optimize`` expects."""
        return float(self.evaluate(np.asarray(x)[None, :])[0])

    def true_value(self, x: np.ndarray) -> np.ndarray:
        """Noise-free values at x [m, n] (or one x [n])."""
        return np.asarray(self.fn(np.atleast_2d(x)), dtype=float).reshape(-1)

    def regret(self, x: np.ndarray) -> float | None:
        """Simple regret of a recommended point, on the noise-free function."""
        if self.optimum_value is None:
            return None
        return float(self.optimum_value - self.true_value(x)[0])

    def distance(self, x: np.ndarray) -> float | None:
        """Euclidean distance from x to the nearest known maximizer, in native coordinates."""
        if self.optimizers is None:
            return None
        return float(np.min(np.linalg.norm(self.optimizers - np.asarray(x)[None, :], axis=1)))


def _box(low: float, high: float, dim: int) -> np.ndarray:
    return np.tile([low, high], (dim, 1)).astype(float)


_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])


def hartmann6() -> Problem:
    """Hartmann-6 on [0, 1]^6: four local maxima, the global one 3.32237 at x*."""

    def f(x: np.ndarray) -> np.ndarray:
        inner = np.einsum("ij,mij->mi", _H6_A, (x[:, None, :] - _H6_P[None]) ** 2)
        return np.exp(-inner) @ _H6_ALPHA

    x_star = np.array([[0.20168952, 0.15001069, 0.47687398, 0.27533243, 0.31165162, 0.65730054]])
    return Problem("hartmann6", f, _box(0, 1, 6), 3.32236801141551, x_star)


def branin() -> Problem:
    """Branin (negated) on [-5, 10] x [0, 15]: three global maxima of -0.397887."""

    def f(x: np.ndarray) -> np.ndarray:
        a, b, c = 1.0, 5.1 / (4 * math.pi ** 2), 5 / math.pi
        r, s, t = 6.0, 10.0, 1 / (8 * math.pi)
        x1, x2 = x[:, 0], x[:, 1]
        return -(a * (x2 - b * x1 ** 2 + c * x1 - r) ** 2 + s * (1 - t) * np.cos(x1) + s)

    opt = np.array([[-math.pi, 12.275], [math.pi, 2.275], [9.42478, 2.475]])
    return Problem("branin", f, np.array([[-5.0, 10.0], [0.0, 15.0]]), -0.39788735772973816, opt, sign=-1.0)


def ackley(dim: int = 10) -> Problem:
    """Ackley (negated) on [-32.768, 32.768]^d: a needle at 0 in a field of ripples."""

    def f(x: np.ndarray) -> np.ndarray:
        a = -20 * np.exp(-0.2 * np.sqrt(np.mean(x ** 2, axis=1)))
        return -(a - np.exp(np.mean(np.cos(2 * math.pi * x), axis=1)) + 20 + math.e)

    return Problem(f"ackley{dim}", f, _box(-32.768, 32.768, dim), 0.0, np.zeros((1, dim)), sign=-1.0)


def levy(dim: int = 10) -> Problem:
    """Levy (negated) on [-10, 10]^d: maximum 0 at (1, ..., 1)."""

    def f(x: np.ndarray) -> np.ndarray:
        w = 1 + (x - 1) / 4
        head = np.sin(math.pi * w[:, 0]) ** 2
        mid = np.sum((w[:, :-1] - 1) ** 2 * (1 + 10 * np.sin(math.pi * w[:, :-1] + 1) ** 2), axis=1)
        tail = (w[:, -1] - 1) ** 2 * (1 + np.sin(2 * math.pi * w[:, -1]) ** 2)
        return -(head + mid + tail)

    return Problem(f"levy{dim}", f, _box(-10, 10, dim), 0.0, np.ones((1, dim)), sign=-1.0)


def rosenbrock(dim: int = 10) -> Problem:
    """Rosenbrock (negated) on [-5, 10]^d: a curved valley, maximum 0 at (1, ..., 1)."""

    def f(x: np.ndarray) -> np.ndarray:
        return -np.sum(100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (x[:, :-1] - 1) ** 2, axis=1)

    return Problem(f"rosenbrock{dim}", f, _box(-5, 10, dim), 0.0, np.ones((1, dim)), sign=-1.0)


def rastrigin(dim: int = 10) -> Problem:
    """Rastrigin (negated) on [-5.12, 5.12]^d: a regular grid of local maxima, the best 0 at 0."""

    def f(x: np.ndarray) -> np.ndarray:
        return -(10 * dim + np.sum(x ** 2 - 10 * np.cos(2 * math.pi * x), axis=1))

    return Problem(f"rastrigin{dim}", f, _box(-5.12, 5.12, dim), 0.0, np.zeros((1, dim)), sign=-1.0)


def styblinski_tang(dim: int = 10) -> Problem:
    """Styblinski-Tang (negated) on [-5, 5]^d: maximum 39.16617 d at x_i = -2.903534."""

    def f(x: np.ndarray) -> np.ndarray:
        return -0.5 * np.sum(x ** 4 - 16 * x ** 2 + 5 * x, axis=1)

    x_star = np.full((1, dim), -2.903534027771178)
    return Problem(f"styblinski_tang{dim}", f, _box(-5, 5, dim), 39.16616570377142 * dim, x_star, sign=-1.0)


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "hartmann6": hartmann6,
    "branin": branin,
    "ackley": ackley,
    "levy": levy,
    "rosenbrock": rosenbrock,
    "rastrigin": rastrigin,
    "styblinski_tang": styblinski_tang,
}
_FIXED_DIM = {"hartmann6": 6, "branin": 2}


def noisy(problem: Problem, std: float, seed: int = 0) -> Problem:
    """The same problem observed with additive Gaussian noise of standard deviation ``std``."""
    if not std >= 0:
        raise ValueError(f"noise_std={std!r}: must be a non-negative number")
    return Problem(problem.name if std == 0 else f"noisy_{problem.name}", problem.fn, problem.bounds,
                   problem.optimum_value, problem.optimizers, std, problem.sign, rng=np.random.default_rng(seed),
                   space=problem.space)


def import_function(path: str) -> Callable:
    """Import ``package.module.function`` (or ``module:function``) and return the function."""
    module_name, _, attr = path.replace(":", ".").rpartition(".")
    if not module_name:
        raise ValueError(f"problem.fn={path!r}: give an import path such as mypackage.mymodule.myfunction")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"problem.fn={path!r}: cannot import module {module_name!r} ({err})") from None
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise ValueError(f"problem.fn={path!r}: module {module_name!r} has no attribute {attr!r}") from None
    if not callable(fn):
        raise ValueError(f"problem.fn={path!r}: {attr!r} is not callable")
    return fn


def from_callable(fn: Callable, bounds: Sequence[Sequence[float]] | Any, batched: bool = False,
                  direction: str = "maximize", optimum: float | None = None, name: str = "callable") -> Problem:
    """Wrap a user's function as a Problem: one x [n] -> float (or [m, n] -> [m] with ``batched``) over
    bounds, or one setting (a dict) -> float (``batched``: a list of dicts) over a named ``Space``."""
    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction={direction!r}: choose maximize or minimize")
    space = bounds if isinstance(bounds, Space) else None
    b = space.bounds if space is not None else check_bounds(bounds)
    sign = 1.0 if direction == "maximize" else -1.0

    def f(x: np.ndarray) -> np.ndarray:
        points = space.present(x) if space is not None else x
        if batched:
            return sign * np.asarray(fn(points), dtype=float).reshape(-1)
        return sign * np.array([float(fn(p)) for p in points])

    value = None if optimum is None else sign * float(optimum)
    return Problem(name, f, b, value, None, sign=sign, space=space)


def read_cluster(workload: str = "steady", seed: int = 0, typed: bool = False) -> Problem:
    """The live storage read-cluster (``read_cluster.py``): minimize mean read latency; noisy, stateful,
    optimum unknown. Each evaluation advances the running cluster by one window of traffic. ``typed``: its
    named knobs (``knob_space``: log-scale temperature, an integer latency memory) instead of the plain box."""
    from .read_cluster import BOUNDS, ClusterConfig, LiveObjective, knob_space

    live = LiveObjective(ClusterConfig(workload=workload), seed=seed)
    if typed:
        space = knob_space()
        return Problem(f"read_cluster_{workload}_knobs",
                       lambda X: np.array([live.setting(p) for p in space.present(X)]), space.bounds.copy(),
                       space=space)
    return Problem(f"read_cluster_{workload}", lambda X: np.array([live(x) for x in X]), BOUNDS.copy())


def make_problem(name: str, dim: int = 0, noise_std: float = 0.0, seed: int = 0, workload: str = "steady",
                 typed: bool = False) -> Problem:
    """A built-in problem by name, e.g. ``make_problem("ackley", dim=20, noise_std=0.1)``."""
    if name == "read_cluster":
        problem = read_cluster(workload, seed, typed)
        return noisy(problem, noise_std, seed) if noise_std else problem
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}: choose from {', '.join(sorted(PROBLEMS))}, read_cluster "
                         "or callable")
    if name in _FIXED_DIM:
        if dim not in (0, _FIXED_DIM[name]):
            raise ValueError(f"problem {name} has dimension {_FIXED_DIM[name]}, not dim={dim}")
        problem = PROBLEMS[name]()
    else:
        if dim < 0 or dim == 1 and name in ("rosenbrock", "levy"):
            raise ValueError(f"dim={dim}: {name} needs dim >= 2")
        problem = PROBLEMS[name](dim or 10)
    return noisy(problem, noise_std, seed) if noise_std else problem
