"""nes_ensemble: optimize an expensive, noisy system with a population of diverse neural surrogates.

    import nes_ensemble as ne
    result = ne.optimize(fn, bounds, budget=300, seed=0)
    opt = ne.Optimizer(bounds); X = opt.ask(4); opt.tell(X, y)
    space = {"threads": ne.Int(1, 64, log=True), "policy": ne.Categorical(["fifo", "lifo"])}
    result = ne.optimize(fn, space, budget=100, initial=[current_setting])   # fn(params: dict) -> float
"""

from typing import Any

_LAZY = {"EvaluationError": "engine.loop", "Optimizer": "engine.optimizer", "Result": "engine.synchronous",
         "optimize": "engine.synchronous", "Problem": "problems", "make_problem": "problems", "Float": "space",
         "Int": "space", "Categorical": "space", "Space": "space", "UnsafeCheckpointError": "engine.checkpoint",
         "plot_convergence": "app.visualization", "plot_lineage": "app.visualization",
         "plot_comparison": "app.visualization"}


def __getattr__(name: str) -> Any:
    """Import on first use, so that worker processes which only need ``nes_ensemble.engine.remote`` or
    ``nes_ensemble.problems`` do not pay for torch."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["EvaluationError", "Optimizer", "Result", "optimize", "Problem", "make_problem", "Float", "Int",
           "Categorical", "Space", "UnsafeCheckpointError", "plot_convergence", "plot_lineage", "plot_comparison"]
__version__ = "0.1.0"
