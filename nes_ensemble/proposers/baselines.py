"""Well-known optimizers as proposers, so a comparison is one sweep and every run is tracked alike.

All of them search the unit cube (the user's box, rescaled):

* ``random`` (uniform) and ``sobol`` (scrambled Sobol, scipy.stats.qmc), ten points a round;
* evotorch's ``CMAES``, ``SNES``, ``XNES`` and ``PGPE`` on the true function, centred in the cube
  with a step size of a quarter of the range (``strategy.stdev_init``) and their documented
  default population sizes (PGPE, which has none, gets CMA-ES's 4 + 3 ln d, rounded up to even).
  They run unbounded in float64; a point they sample outside the cube is evaluated at its
  projection, and they are told that value. evotorch runs a whole generation inside ``step()``;
  here that loop runs in a helper thread that waits for each generation's values, so evotorch
  itself is used unchanged;
* ``tpe`` (Optuna's TPE sampler), ``ogp`` (Optuna's GPSampler: a Matern-5/2 GP with log expected
  improvement) and ``gp`` (BoTorch: SingleTaskGP + LogExpectedImprovement, ``optimize_acqf`` with
  q=1), from the optional extra ``pip install -e ".[baselines]"``.

A failed evaluation is told to the evolution strategies as the worst value seen so far. The
engines of evotorch and Optuna cannot be saved; their checkpoints hold the pool, which is replayed
into a fresh engine on load (proposals are deterministic given the seed).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import warnings
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import qmc

from ..engine.ledger import Ledger, Proposal
from ..engine.pool import Provenance
from .base import Proposer, RunSetup

EVOTORCH = ("cmaes", "snes", "xnes", "pgpe")
OPTIONAL = {"tpe": "optuna", "ogp": "optuna", "gp": "botorch"}
BASELINES = ("random", "sobol", *EVOTORCH, *OPTIONAL)


class Baseline(Proposer):
    """A baseline's proposals, numbered in the order they are drawn (``Provenance.member``)."""

    def __init__(self, setup: RunSetup):
        super().__init__(setup)
        self.round = 0
        self.drawn = 0  # points drawn so far

    def plan(self, ledger: Ledger) -> list[Proposal]:
        """The baseline's next points, each with the source named after the strategy."""
        points = self.draw(ledger)
        self.round += 1
        out = [Proposal(np.asarray(x, dtype=float), Provenance(self.name, member=self.drawn + j, round=self.round))
               for j, x in enumerate(points)]
        self.drawn += len(points)
        return out

    def draw(self, ledger: Ledger) -> np.ndarray:
        """The next points [m, dim] in the unit cube."""
        raise NotImplementedError

    def observe(self, ledger: Ledger, start: int,
                proposals: list[Proposal] | None) -> Callable[[Proposal], bool] | None:
        """Tell the engine the values of its own proposals."""
        if proposals is not None:
            for p, v in zip(proposals, ledger.pool.y[start:]):
                self.tell(p.provenance.member, float(v), ledger)
        return None

    def tell(self, index: int, value: float, ledger: Ledger) -> None:
        """The (maximized) value of the point drawn ``index``-th; NaN for a failed evaluation."""

    def metrics(self, ledger: Ledger) -> dict[str, float]:
        """The round."""
        return {"round": float(self.round)}

    def state_dict(self) -> dict[str, Any] | None:
        """Counters only: the points depend on nothing else but the seed."""
        return {"round": self.round, "drawn": self.drawn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self.round, self.drawn = int(state["round"]), int(state["drawn"])


class RandomSearch(Baseline):
    """Uniform random points, ten a round."""

    def draw(self, ledger: Ledger) -> np.ndarray:
        """Ten uniform points."""
        return self.rng.random((10, self.dim))


class SobolSearch(Baseline):
    """A scrambled Sobol sequence, ten points a round."""

    def draw(self, ledger: Ledger) -> np.ndarray:
        """The sequence's next ten points."""
        return sobol(self.dim, self.seed, self.drawn, 10)


class EvotorchSearch(Baseline):
    """evotorch's CMA-ES, SNES, XNES or PGPE, a generation a round."""

    def __init__(self, setup: RunSetup):
        super().__init__(setup)
        self.engine = _Inverted(self.name, self.dim, self.seed, self.cfg.strategy.stdev_init)
        self.generation: tuple[int, np.ndarray, dict[int, float]] | None = None  # first index, points, values

    def draw(self, ledger: Ledger) -> np.ndarray:
        """The engine's next generation (clipped to the cube; the engine keeps the raw points)."""
        raw = self.engine.ask()
        self.generation = (self.drawn, raw, {})
        return np.clip(raw, 0.0, 1.0)

    def tell(self, index: int, value: float, ledger: Ledger) -> None:
        """Collect the generation's values; tell the engine once all are in (failures as the worst seen)."""
        if self.generation is None:
            return
        first, raw, told = self.generation
        if 0 <= index - first < len(raw):
            told[index - first] = value
            if len(told) == len(raw):
                values = np.array([told[j] for j in range(len(raw))])
                seen = ledger.pool.y[ledger.pool.ok]
                worst = float(seen.min()) if seen.size else 0.0
                self.engine.tell(np.where(np.isfinite(values), values, worst))
                self.generation = None

    def state_dict(self) -> None:
        """None: the engine is rebuilt by replaying the pool."""
        return None


class OptunaSearch(Baseline):
    """An Optuna sampler, one point a round: TPE (``tpe``) or Optuna's Gaussian-process sampler (``ogp``)."""

    def __init__(self, setup: RunSetup):
        super().__init__(setup)
        self.optuna = require(self.name)
        self.optuna.logging.set_verbosity(self.optuna.logging.WARNING)
        samplers = self.optuna.samplers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # GPSampler is marked experimental
            sampler = (samplers.TPESampler(seed=self.seed) if self.name == "tpe"
                       else samplers.GPSampler(seed=self.seed))
        self.study = self.optuna.create_study(direction="maximize", sampler=sampler)
        self.trials: dict[int, Any] = {}
        self.space = setup.space

    def draw(self, ledger: Ledger) -> np.ndarray:
        """The sampler's next trial: on a named space with Optuna's own distributions (integers, choices, log
        scales), else on the unit cube."""
        trial = self.study.ask()
        self.trials[self.drawn] = trial
        if self.space is not None:
            return self.space.accept({name: _suggest(trial, name, p) for name, p in self.space.params.items()})
        return np.array([[trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(self.dim)]])

    def tell(self, index: int, value: float, ledger: Ledger) -> None:
        """Complete the trial (failed for NaN)."""
        trial = self.trials.pop(index, None)
        if trial is None:
            return
        if np.isfinite(value):
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)

    def state_dict(self) -> None:
        """None: the study is rebuilt by replaying the pool."""
        return None


class GPSearch(Baseline):
    """BoTorch: a GP fitted to the pool and LogExpectedImprovement, one point a round."""

    def __init__(self, setup: RunSetup):
        super().__init__(setup)
        require("gp")

    def draw(self, ledger: Ledger) -> np.ndarray:
        """Maximize LogExpectedImprovement of a GP fitted to the pool (standardized y); Sobol points first."""
        from botorch.acquisition import LogExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.optim import optimize_acqf
        from gpytorch.mlls import ExactMarginalLogLikelihood

        pool = ledger.pool
        ok = pool.ok
        if ok.sum() < 2 * self.dim or ok.sum() < 5:  # a Sobol start, as BoTorch's tutorials do
            return sobol(self.dim, self.seed, self.drawn, 1)
        X = torch.tensor(pool.x[ok], dtype=torch.float64)
        y = torch.tensor(pool.y[ok], dtype=torch.float64)
        y = ((y - y.mean()) / (y.std() + 1e-12)).unsqueeze(-1)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed + self.drawn)
            model = SingleTaskGP(X, y)
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            acq = LogExpectedImprovement(model, best_f=y.max())
            bounds = torch.stack([torch.zeros(self.dim), torch.ones(self.dim)]).double()
            cand, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=8, raw_samples=256)
        return cand.detach().numpy()


PROPOSERS: dict[str, type[Baseline]] = {"random": RandomSearch, "sobol": SobolSearch, "tpe": OptunaSearch,
                                        "ogp": OptunaSearch,
                                        "gp": GPSearch, **{name: EvotorchSearch for name in EVOTORCH}}


class _Stop(Exception):
    pass


class _Inverted:
    """Runs an evotorch searcher's ``step()`` loop in a thread; each generation becomes an ask and a tell."""

    def __init__(self, name: str, dim: int, seed: int, stdev: float):
        from evotorch import Problem
        from evotorch.algorithms import CMAES, PGPE, SNES, XNES

        for logger in ("evotorch", "evotorch.core", "evotorch.optimizers"):  # its INFO lines drown the progress bar
            logging.getLogger(logger).setLevel(logging.WARNING)

        self._asks: queue.Queue = queue.Queue()
        self._tells: queue.Queue = queue.Queue()
        problem = Problem("max", self._evaluate, solution_length=dim, initial_bounds=(0.0, 1.0), vectorized=True,
                          dtype=torch.float64, seed=seed)
        centre = torch.full((dim,), 0.5, dtype=torch.float64)
        if name == "pgpe":
            popsize = 2 * math.ceil((4 + 3 * math.log(dim)) / 2)
            centre_lr = stdev / 10  # ClipUp's speed limit is twice this: a tenth of the initial spread per generation
            self.searcher = PGPE(problem, popsize=popsize, center_learning_rate=centre_lr, stdev_learning_rate=0.1,
                                 stdev_init=stdev, center_init=centre)
        else:
            self.searcher = {"cmaes": CMAES, "snes": SNES, "xnes": XNES}[name](problem, stdev_init=stdev,
                                                                             center_init=centre)
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"nes_ensemble-{name}")
        self._thread.start()

    def _loop(self) -> None:
        try:
            while True:
                self.searcher.step()
        except _Stop:
            pass
        except Exception as err:  # surface evotorch's errors in the asking thread
            self._asks.put(err)

    def _evaluate(self, X: torch.Tensor) -> torch.Tensor:
        self._asks.put(X.detach().cpu().numpy().copy())
        values = self._tells.get()
        if values is None:
            raise _Stop
        return torch.as_tensor(values, dtype=torch.float64)

    def ask(self) -> np.ndarray:
        """The next generation's points, raw."""
        out = self._asks.get()
        if isinstance(out, Exception):
            raise RuntimeError(f"the evotorch searcher failed: {out}") from out
        return out

    def tell(self, values: np.ndarray) -> None:
        """The generation's values, in its order."""
        self._tells.put(np.asarray(values, dtype=float))

    def close(self) -> None:
        """Let the searcher's thread end."""
        self._tells.put(None)


def _suggest(trial: Any, name: str, p: Any) -> Any:
    """One parameter of a named space suggested by an Optuna trial."""
    from ..space import Categorical, Int

    if isinstance(p, Categorical):
        return trial.suggest_categorical(name, list(p.choices))
    if isinstance(p, Int):
        return trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
    return trial.suggest_float(name, p.low, p.high, log=p.log)


def sobol(dim: int, seed: int, start: int, n: int) -> np.ndarray:
    """Points start .. start + n of one scrambled Sobol sequence."""
    sampler = qmc.Sobol(dim, scramble=True, seed=seed)
    if start:
        sampler.fast_forward(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balance properties need powers of two; a stream cannot keep them
        return sampler.random(n)


def require(name: str) -> Any:
    """The optional library a baseline needs, or a ValueError that says how to install it."""
    module = OPTIONAL[name]
    try:
        return __import__(module)
    except ImportError:
        raise ValueError(f"strategy={name} needs {module}: install the optional extra with "
                         f"pip install \"nes_ensemble[baselines]\"") from None
