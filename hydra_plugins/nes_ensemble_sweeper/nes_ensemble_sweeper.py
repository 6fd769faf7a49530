"""``hydra/sweeper=nes_ensemble``: tune any Hydra app with nes_ensemble, each trial a Hydra job on the launcher the
app is configured with.

    python my_app.py -m hydra/sweeper=nes_ensemble hydra.sweeper.budget=60 hydra.sweeper.n_jobs=2 \\
        'lr=tag(log,interval(1e-4,1e-1))' 'layers=range(1,8)' 'opt=choice(adam,sgd)'

Hydra imports this module at every app's start, so it holds the settings and a thin class only; the work
is in ``nes_ensemble.integrations.hydra_sweeper``, imported when a sweep is made.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper

from nes_ensemble.config import EnsembleConfig, EvolutionConfig, SearchConfig  # plain dataclasses: a cheap import


@dataclass
class TrackingSettings:
    """Where the sweep is recorded in MLflow (one optimization run; the jobs are its evaluations)."""

    enabled: bool = True
    uri: str = ""  # empty: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in the folder the sweep starts in
    experiment: str = "nes_ensemble"
    run_name: str = ""  # empty: nes-<app>-s<seed>


@dataclass
class NESSweeperConf:
    """The sweeper's settings: ``hydra.sweeper.budget=60`` and so on."""

    _target_: str = "hydra_plugins.nes_ensemble_sweeper.nes_ensemble_sweeper.NESSweeper"
    budget: int = 60  # jobs in all
    n_jobs: int = 1  # jobs asked and launched at a time (the launcher runs them side by side if it can)
    direction: str = "minimize"  # of the value each job returns: minimize or maximize
    seed: int = 0
    strategy: str = "nes"  # nes, sgd, or another nes_ensemble strategy
    max_failures: int = 10  # stop after this many failed jobs in a row (0: never)
    params: Dict[str, str] = field(default_factory=dict)  # the search space, in the override grammar: lr: interval(0,1)
    # nes_ensemble's config groups, with their keys and defaults (conf/): hydra.sweeper.ensemble.members=20
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    tracking: TrackingSettings = field(default_factory=TrackingSettings)


ConfigStore.instance().store(group="hydra/sweeper", name="nes_ensemble", node=NESSweeperConf,
                             provider="nes_ensemble")


class NESSweeper(Sweeper):
    """Hydra's sweeper interface, handed to ``nes_ensemble.integrations.hydra_sweeper.SweeperImpl``."""

    def __init__(self, budget: int, n_jobs: int, direction: str, seed: int, strategy: str, max_failures: int,
                 params: Optional[Any], ensemble: Any, search: Any, evolution: Any, tracking: Any) -> None:
        from nes_ensemble.integrations.hydra_sweeper import SweeperImpl

        self.sweeper = SweeperImpl(budget, n_jobs, direction, seed, strategy, params, max_failures, tracking,
                                   {"ensemble": ensemble, "search": search, "evolution": evolution})

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: List[str]) -> None:
        return self.sweeper.sweep(arguments)
