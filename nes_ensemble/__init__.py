"""nes_ensemble: optimize an expensive, noisy system with a population of diverse neural surrogates.

    import nes_ensemble as ne
    result = ne.optimize(fn, bounds, budget=300, seed=0)
    opt = ne.Optimizer(bounds); X = opt.ask(4); opt.tell(X, y)
"""

from .optimizer import EvaluationError, Optimizer, Result, optimize
from .problems import Problem, make_problem

__all__ = ["EvaluationError", "Optimizer", "Result", "optimize", "Problem", "make_problem"]
__version__ = "0.1.0"
