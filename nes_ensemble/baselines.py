"""Well-known optimizers behind nes_ensemble's ask / tell, pool, journal, history and tracking.

``strategy=random | sobol | cmaes | snes | xnes | pgpe | tpe | gp`` makes the same ``Optimizer``
interface run a baseline instead of the network population, so a comparison is one Hydra sweep and
every baseline run is tracked, journaled and resumable like any other. All of them search the unit
cube (the user's box, rescaled):

* ``random`` (uniform) and ``sobol`` (scrambled Sobol, scipy.stats.qmc);
* evotorch's ``CMAES``, ``SNES``, ``XNES`` and ``PGPE`` on the true function, centred in the cube
  with a step size of a quarter of the range (``baseline.stdev_init``) and their documented
  default population sizes (PGPE, which has none, gets CMA-ES's 4 + 3 ln d, rounded up to even).
  They run unbounded in float64; a point they sample outside the cube is evaluated at its
  projection, and they are told that value. evotorch runs a whole generation inside ``step()``;
  here that loop runs in a helper thread that waits for each generation's values, so evotorch
  itself is used unchanged;
* ``tpe`` (Optuna's TPE sampler) and ``gp`` (BoTorch: SingleTaskGP + LogExpectedImprovement,
  ``optimize_acqf`` with q=1), from the optional extra ``pip install -e ".[baselines]"``.

A failed evaluation is told to the evolution strategies as the worst value seen so far. Checkpoints
hold the pool and the seed; ``load`` rebuilds the baseline and replays the pool into it.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
from typing import Any

import numpy as np
import torch
from scipy.stats import qmc

from .optimizer import Optimizer, _Proposal
from .pool import Provenance

EVOTORCH = ("cmaes", "snes", "xnes", "pgpe")
OPTIONAL = {"tpe": "optuna", "gp": "botorch"}
BASELINES = ("random", "sobol", *EVOTORCH, *OPTIONAL)


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
        if name == "cmaes":
            self.searcher = CMAES(problem, stdev_init=stdev, center_init=centre)
        elif name == "snes":
            self.searcher = SNES(problem, stdev_init=stdev, center_init=centre)
        elif name == "xnes":
            self.searcher = XNES(problem, stdev_init=stdev, center_init=centre)
        else:
            popsize = 2 * math.ceil((4 + 3 * math.log(dim)) / 2)
            centre_lr = stdev / 10  # ClipUp's speed limit is twice this: a tenth of the initial spread per generation
            self.searcher = PGPE(problem, popsize=popsize, center_learning_rate=centre_lr, stdev_learning_rate=0.1,
                                 stdev_init=stdev, center_init=centre)
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
        out = self._asks.get()
        if isinstance(out, Exception):
            raise RuntimeError(f"the evotorch searcher failed: {out}") from out
        return out

    def tell(self, values: np.ndarray) -> None:
        self._tells.put(np.asarray(values, dtype=float))

    def close(self) -> None:
        self._tells.put(None)


class Baseline(Optimizer):
    """An ``Optimizer`` whose proposals come from a baseline named by ``strategy.name``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.queue = []
        self.events = []
        self._start_engine()

    @property
    def name(self) -> str:
        return self.cfg.strategy.name

    def _start_engine(self) -> None:
        name, dim = self.name, self.dim
        self.engine: Any = None
        self.generation: list[tuple[np.ndarray, dict[int, float]]] = []  # the evotorch generation being evaluated
        self.drawn = 0
        if name in EVOTORCH:
            self.engine = _Inverted(name, dim, self.seed, self.cfg.strategy.stdev_init)
        elif name == "tpe":
            optuna = _require("tpe")
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            self.engine = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=self.seed))
            self.trials: dict[int, Any] = {}
        elif name == "gp":
            _require("gp")

    def _plan(self) -> None:
        name, dim = self.name, self.dim
        if name == "random":
            points = self.rng.random((10, dim))
        elif name == "sobol":
            points = _sobol(dim, self.seed, self.drawn, 10)
        elif name in EVOTORCH:
            raw = self.engine.ask()
            self.generation = [(raw, {})]
            points = np.clip(raw, 0.0, 1.0)
        elif name == "tpe":
            trial = self.engine.ask()
            points = np.array([[trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(dim)]])
            self.trials[self.drawn] = trial
        else:
            points = self._gp_point()
        self.round += 1
        for j, x in enumerate(points):
            prov = Provenance(name, member=self.drawn + j, round=self.round)
            self.queue.append(_Proposal(np.asarray(x, dtype=float), prov))
        self.drawn += len(points)

    def _account(self, proposals: list[_Proposal], values: np.ndarray) -> None:
        name = self.name
        for p, v in zip(proposals, values):
            index = p.provenance.member
            if name in EVOTORCH and self.generation:
                raw, told = self.generation[0]
                j = index - (self.drawn - len(raw))
                if 0 <= j < len(raw):
                    told[j] = float(v)
                    if len(told) == len(raw):
                        self._finish_generation()
            elif name == "tpe" and index in self.trials:
                trial = self.trials.pop(index)
                if np.isfinite(v):
                    self.engine.tell(trial, float(v))
                else:
                    self.engine.tell(trial, state=_require("tpe").trial.TrialState.FAIL)

    def _finish_generation(self) -> None:
        raw, values = self.generation[0]
        told = np.array([values[j] for j in range(len(raw))])
        seen = self.pool.y[self.pool.ok]
        worst = float(seen.min()) if seen.size else 0.0
        self.engine.tell(np.where(np.isfinite(told), told, worst))
        self.generation = []

    def _gp_point(self) -> np.ndarray:
        """Maximize BoTorch's LogExpectedImprovement of a GP fitted to the pool (standardized y)."""
        from botorch.acquisition import LogExpectedImprovement
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.optim import optimize_acqf
        from gpytorch.mlls import ExactMarginalLogLikelihood

        ok = self.pool.ok
        if ok.sum() < 2 * self.dim or ok.sum() < 5:  # a Sobol start, as BoTorch's tutorials do
            return _sobol(self.dim, self.seed, self.drawn, 1)
        X = torch.tensor(self.pool.x[ok], dtype=torch.float64)
        y = torch.tensor(self.pool.y[ok], dtype=torch.float64)
        y = ((y - y.mean()) / (y.std() + 1e-12)).unsqueeze(-1)
        with torch.random.fork_rng():
            torch.manual_seed(self.seed + self.drawn)
            model = SingleTaskGP(X, y)
            fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            acq = LogExpectedImprovement(model, best_f=y.max())
            bounds = torch.stack([torch.zeros(self.dim), torch.ones(self.dim)]).double()
            cand, _ = optimize_acqf(acq, bounds=bounds, q=1, num_restarts=8, raw_samples=256)
        return cand.detach().numpy()

    # ------------------------------------------------------------------ checkpoints: pool + seed, replayed
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        for key in ("engine", "generation", "trials"):
            state.pop(key, None)
        state["kind"] = "baseline"
        return state

    def _restore(self) -> None:
        """Rebuild the engine and replay the pool into it (proposals are deterministic given the seed)."""
        pool_x, pool_y, reasons, prov = self.pool.x, self.pool.y, self.pool.reasons, self.pool.provenance
        journal, self.journal_path = self.journal_path, None
        told = {tuple(x): (y, r) for x, y, r in zip(pool_x, pool_y, reasons)}
        from .pool import SamplePool

        self.pool = SamplePool(self.dim)
        self.queue, self.pending, self.round = [], [], 0
        self.rng = np.random.default_rng(self.seed)
        self._start_engine()
        try:
            while len(self.pool) < len(pool_x):
                X = self.ask(1)
                key = tuple(self.pending[-1][1].x)
                if key not in told:
                    raise ValueError("the checkpoint's evaluations do not replay into this baseline")
                y, r = told.pop(key)
                self.tell(X, [self.sign * y if np.isfinite(y) else np.nan], [r])
        finally:
            self.journal_path = journal
        self.pool.provenance = prov


def _sobol(dim: int, seed: int, start: int, n: int) -> np.ndarray:
    """Points start .. start + n of one scrambled Sobol sequence."""
    sampler = qmc.Sobol(dim, scramble=True, seed=seed)
    if start:
        sampler.fast_forward(start)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # balance properties need powers of two; a stream cannot keep them
            return sampler.random(n)


def _require(name: str) -> Any:
    module = OPTIONAL[name]
    try:
        return __import__(module)
    except ImportError:
        raise ValueError(f"strategy={name} needs {module}: install the optional extra with "
                         f"pip install -e \".[baselines]\"") from None
