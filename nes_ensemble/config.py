"""Structured configuration: one dataclass per config group, shared by the Hydra app and the API.

The same dataclasses type-check the YAML files in ``conf/`` (through Hydra's ConfigStore, see
``app.py``) and the ``config=`` / ``**overrides`` of the Python API, so a misspelt key fails at
start in both places. This module imports OmegaConf (a small dependency of Hydra) but not Hydra.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError


@dataclass
class EnsembleConfig:
    """The population of surrogate networks and how each member is trained on the pool."""

    members: int = 10  # k: networks in the population
    widths: list[int] = field(default_factory=lambda: [32, 64])  # hidden width, drawn per member
    depths: list[int] = field(default_factory=lambda: [2, 3])  # hidden layers, drawn per member
    activations: list[str] = field(default_factory=lambda: ["tanh", "silu", "relu"])
    optimizers: list[str] = field(default_factory=lambda: ["adam", "rmsprop", "rprop"])  # in blocks of members
    lr_min: float = 3e-3  # learning rates are drawn log-uniformly in [lr_min, lr_max]
    lr_max: float = 1e-2
    weight_decay_min: float = 1e-5  # decoupled weight decay, log-uniform
    weight_decay_max: float = 1e-3
    sparsity_min: float = 0.0  # fraction of each weight matrix zeroed by a fixed mask
    sparsity_max: float = 0.2
    y_transform: str = "rank"  # standardize | rank (Gaussian copula of ranks, robust to outliers)
    train_steps_initial: int = 400  # steps after the initial design
    train_steps: int = 80  # warm-started steps after each round of new evaluations
    batch_size: int = 128  # full batch up to this pool size, per-member minibatches beyond it
    bootstrap: bool = True  # each member weighs samples by its own Poisson(1) draw (bagging)


@dataclass
class SearchConfig:
    """How the networks are turned into proposals."""

    mode: str = "surrogate"  # surrogate: ascents run on the networks | original: each step evaluated
    init_design: str = "sobol"  # sobol | lhs | random
    n_init: int = 0  # initial design size; 0 = auto (max(20, 6 * dim), at most budget / 4)
    random_starts: int = 32  # extra random ascent starts per member, for exploration (32 measured better than 4
    # on 6 of 8 test problems: experiments/ablation.py --name random_starts)
    ascent_lr: float = 0.02  # Adam step on x in the unit cube
    ascent_radius: float = 0.0  # ascents stay within this distance (per coordinate, unit cube) of their start;
    # 0 = anywhere in the cube
    short_radius: float = 0.05  # the ascent radius of a short run (one whose rounds min_rounds shrinks), when
    # ascent_radius is 0: as good or better on 5 of 5 short-budget problems, worse at 200-300 evaluations
    ascent_steps_max: int = 60  # ascent steps while the networks are not trusted
    ascent_steps_min: int = 8
    ascent_shrink: float = 0.7  # steps *= shrink on a successful round, /= shrink otherwise
    success_target: float = 0.2  # fraction of ascent proposals that must improve their start
    assignment: str = "best"  # best: a member proposes its best end point | rotate: from sibling r+round
    select: str = "mean"  # which of a member's ascent end points it proposes: the best by the population's
    # mean prediction (mean, measured better on 6 of 6 test problems) or by its own prediction (own)
    beta: float = 1.0  # select=ucb: weight of the members' disagreement (std of their predictions)
    proposals_per_round: int = 10  # ascent proposals per round, at most one per member; 0 = one per member (with
    # 30 members, 10 reach x* to 1.8e-8 at 1000 Hartmann-6 evaluations against 1.3e-5: more rounds, more polishing)
    gaussian_per_round: int = 4  # Gaussian samples around the siblings' best points per round
    min_rounds: int = 10  # when the budget is known and too short for this many rounds of the sizes above after
    # the initial design, rounds shrink in proportion (at least one ascent and one Gaussian proposal); 0 = never
    sigma_init: float = 0.05  # Gaussian step in the unit cube, adapted by the 1/5 success rule
    sigma_min: float = 1e-4
    sigma_max: float = 0.3
    basins: int = 1  # distinct regions searched at once: the best one, and basins - 1 runners-up (2 with
    # basin_share 0.4 finds Hartmann-6's global basin on 14 of 20 seeds against 10, but costs Ackley and Rastrigin)
    basin_share: float = 0.3  # fraction of the members that climb from the runners-up, each in a box of
    # half-width basin_radius around its region's best point
    basins_until: float = 1.0  # runner-up regions close once this fraction of a known budget is evaluated
    region_patience: int = 0  # a runner-up region that has not gained for this many rounds closes for good; 0 = never
    basin_radius: float = 0.15  # regions are distinct when their best points lie this far apart (times sqrt(dim))
    restart_patience: int = 0  # rounds without gain before the search leaves its basin; 0 = never
    restart_radius: float = 0.1  # a basin left behind is this radius (times sqrt(dim)) around its best point
    restart_points: int = 0  # space-filling points after a restart; 0 = half the initial design
    polish: bool = True  # the round's refinement of the best point maximizes a quadratic fitted to the
    # evaluations nearest it (instead of a Gaussian sample around it) once there are enough of them
    min_distance: float = 1e-4  # proposals closer than this to an evaluated point are jittered
    windows: bool = False  # per-member windows over the pool, rotated (the Go benchmark's scheme)
    window_size: int = 0  # 0 = pool size / members at the first rotation, rounded down to tens
    rotate_every: int = 300  # evaluations between window rotations
    # the original scheme (mode=original): every ascent step is a real evaluation
    original_steps: int = 10
    original_step_size: float = 0.001
    original_patience: int = 2
    original_gaussian: int = 10
    original_sigma: float = 0.01


@dataclass
class EvolutionConfig:
    """The population manager of ``strategy=nes``: fork, train forks apart, NES-weighted merge, replace."""

    every: int = 40  # evaluations between generations; 0 = never
    parents: int = 3  # members forked per generation (the best by test-then-train error)
    children: int = 4  # forks per parent
    fork_steps: int = 80  # training steps of the forks, on the pool without its newest evaluations
    eta: float = 1.0  # merge step: parent += eta * sum_i u_i (fork_i - parent), utilities u sum to one
    sigma_lr: float = 0.3  # fork perturbation of log learning rate
    sigma_weight_decay: float = 0.5  # of log weight decay
    sigma_sparsity: float = 0.05  # of the sparsity (fraction of weights masked)
    widen: float = 0.25  # probability that a fork doubles its hidden width (up to the widest of ensemble.widths)
    replace_factor: float = 2.0  # a member whose error exceeds this times the best's becomes a copy of it; 0 = never
    error_smoothing: float = 0.3  # weight of the newest test-then-train error in each member's moving average


@dataclass
class EvaluatorConfig:
    """How the objective is called, and what happens when an evaluation fails."""

    name: str = "inline"  # inline (in this process) | processes (local worker processes) | ray (Ray tasks)
    n_workers: int = 4  # processes, ray: evaluations in flight at once
    start_method: str = "forkserver"  # processes: how workers start. forkserver (safe: a worker never inherits
    # the optimizer's threads) | spawn | fork (starts faster, but an objective that uses torch or another OpenMP
    # library can hang in a forked worker)
    ray_address: str = ""  # ray: an existing cluster ("auto", "ray://host:10001"); empty = start a local one
    ray_cpus: int = 0  # ray, local cluster: CPUs to give it; 0 = n_workers
    timeout: float = 0.0  # seconds one evaluation may take (inline, main thread only); 0 = no limit
    retries: int = 0  # re-evaluations of a point whose evaluation raised or timed out
    max_failures: int = 10  # consecutive failed evaluations after which the run stops; 0 = never


@dataclass
class StrategyConfig:
    """Which algorithm proposes points: the network population (nes, sgd, es, nes_es) or a baseline.

    nes: SGD-trained members with evolution (fork / merge) on top (the default); sgd: SGD-trained, no
    evolution; es: members trained by evolution strategies (PGPE) instead of back-propagation, no
    evolution; nes_es: ES-trained members with evolution on top.
    """

    name: str = "nes"
    es_popsize: int = 16  # es, nes_es: candidate networks per member per generation (antithetic pairs)
    es_stdev: float = 0.02  # initial standard deviation of the weight perturbations
    es_lr: float = 0.02  # Adam step of each member's centre
    stdev_init: float = 0.25  # cmaes, snes, xnes, pgpe: initial step size in the unit cube (a quarter of the range)


@dataclass
class ProblemConfig:
    """The objective. Built-in problems by name, or ``callable`` with an import path and bounds."""

    name: str = "hartmann6"
    dim: int = 0  # for problems of any dimension (ackley, levy, ...); 0 = the problem's default
    noise_std: float = 0.0  # Gaussian noise added to every evaluation
    fn: str = ""  # callable: "package.module.function"
    bounds: Any = None  # callable: [[low, high], ...]
    batched: bool = False  # callable: fn maps [m, n] to [m]
    direction: str = "maximize"  # callable: maximize | minimize
    optimum: Any = None  # callable: known best value, if any, to report regret
    workload: str = "steady"  # read_cluster: steady | bursty | hotspot


@dataclass
class TrackingConfig:
    """Where runs are recorded. The algorithm never sees this; only the app's tracker does."""

    enabled: bool = True
    uri: str = ""  # empty: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db at the project root
    experiment: str = "nes_ensemble"
    run_name: str = ""  # empty: named for what it is, e.g. nes-hartmann6-k10-s3


@dataclass
class OptimizerConfig:
    """What the Optimizer itself reads: the parts it is built from."""

    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    budget: int = 0  # known budget (0 = unknown); lets the initial design size itself


@dataclass
class AppConfig(OptimizerConfig):
    """The whole Hydra application config (``conf/config.yaml``)."""

    problem: ProblemConfig = field(default_factory=ProblemConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    budget: int = 300
    seed: int = 0
    progress: bool = True
    resume: str = ""  # the run directory of an interrupted run to continue (its own config is used)
    threads: int = 1  # torch CPU threads per run (1 keeps parallel sweep jobs from fighting over cores)


_GROUPS = ("strategy", "ensemble", "search", "evolution", "evaluator")


def make_config(config: Mapping[str, Any] | DictConfig | None = None, **overrides: Any) -> DictConfig:
    """Merge a user's config and keyword overrides into the typed defaults, rejecting unknown keys.

    Overrides may name a group (``search={"mode": "original"}``), a key inside a group with a
    double underscore (``search__mode="original"``) or a dotted string key (``**{"search.mode": ...}``).
    """
    base = OmegaConf.structured(OptimizerConfig)
    layers: list[Any] = []
    if config is not None:
        cfg = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)
        app_only = set(OmegaConf.structured(AppConfig).keys()) - set(base.keys())
        unknown = [k for k in cfg if k not in base and k not in app_only]
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r} in config: the known keys are "
                             f"{', '.join(sorted(base.keys()))}")
        # an app config carries more groups than the optimizer reads; keep only what it reads
        layers.append({k: v for k, v in cfg.items() if k in base})
    for key, value in overrides.items():
        path = key.replace("__", ".").split(".")
        if path[0] not in base:
            known = ", ".join(sorted(base.keys()))
            raise ValueError(f"unknown setting {key!r}: the known groups and keys are {known}")
        node: Any = value
        for part in reversed(path[1:]):
            node = {part: node}
        layers.append({path[0]: node})
    try:
        merged = OmegaConf.merge(base, *layers)
    except (ConfigKeyError, ValidationError) as err:
        raise ValueError(f"bad configuration: {err.msg if hasattr(err, 'msg') else err}") from None
    check(merged)
    return merged


def check(cfg: DictConfig) -> None:
    """Reject values that type-check but make no sense, with a message that names the key."""
    ens, search = cfg.ensemble, cfg.search

    def need(ok: bool, key: str, value: Any, why: str) -> None:
        if not ok:
            raise ValueError(f"{key}={value!r}: {why}")

    need(ens.members >= 1, "ensemble.members", ens.members, "needs at least one member")
    need(len(ens.widths) > 0 and min(ens.widths) >= 1, "ensemble.widths", list(ens.widths), "positive widths")
    need(len(ens.depths) > 0 and min(ens.depths) >= 1, "ensemble.depths", list(ens.depths), "depths >= 1")
    for name in ens.activations:
        need(name in ACTIVATIONS, "ensemble.activations", name, f"choose from {sorted(ACTIVATIONS)}")
    for name in ens.optimizers:
        need(name in OPTIMIZERS, "ensemble.optimizers", name, f"choose from {list(OPTIMIZERS)}")
    need(0 < ens.lr_min <= ens.lr_max, "ensemble.lr_min/lr_max", (ens.lr_min, ens.lr_max), "need 0 < min <= max")
    need(0 <= ens.sparsity_min <= ens.sparsity_max < 1, "ensemble.sparsity_min/max",
         (ens.sparsity_min, ens.sparsity_max), "need 0 <= min <= max < 1")
    need(ens.y_transform in ("standardize", "rank"), "ensemble.y_transform", ens.y_transform,
         "choose standardize or rank")
    need(search.select in ("own", "mean", "ucb"), "search.select", search.select, "choose own, mean or ucb")
    need(search.assignment in ("best", "rotate"), "search.assignment", search.assignment, "choose best or rotate")
    need(search.mode in ("surrogate", "original"), "search.mode", search.mode, "choose surrogate or original")
    need(search.init_design in ("sobol", "lhs", "random"), "search.init_design", search.init_design,
         "choose sobol, lhs or random")
    need(search.min_rounds >= 0, "search.min_rounds", search.min_rounds, "must be >= 0 (0 = rounds never shrink)")
    need(search.short_radius >= 0, "search.short_radius", search.short_radius, "must be >= 0 (0 = no limit)")
    need(search.region_patience >= 0, "search.region_patience", search.region_patience,
         "must be >= 0 (0 = never close)")
    need(0 < search.basins_until <= 1, "search.basins_until", search.basins_until,
         "must lie in (0, 1]: the fraction of the budget after which runner-up regions close")
    need(search.ascent_radius >= 0, "search.ascent_radius", search.ascent_radius, "must be >= 0 (0 = no limit)")
    need(0 < search.ascent_shrink < 1, "search.ascent_shrink", search.ascent_shrink, "must lie in (0, 1)")
    need(search.ascent_steps_min <= search.ascent_steps_max, "search.ascent_steps_min", search.ascent_steps_min,
         "must not exceed search.ascent_steps_max")
    need(0 < search.sigma_min <= search.sigma_init <= search.sigma_max, "search.sigma_init", search.sigma_init,
         "need sigma_min <= sigma_init <= sigma_max, all positive")
    st = cfg.strategy
    need(st.es_popsize >= 2 and st.es_popsize % 2 == 0, "strategy.es_popsize", st.es_popsize,
         "must be an even number >= 2 (samples come in antithetic pairs)")
    need(st.es_stdev > 0 and st.es_lr > 0, "strategy.es_stdev/es_lr", (st.es_stdev, st.es_lr), "must be positive")
    need(not cfg.budget or search.n_init <= cfg.budget, "search.n_init", search.n_init,
         f"the initial design needs more evaluations than budget={cfg.budget}; lower search.n_init or raise budget")
    ev = cfg.evaluator
    need(ev.name in ("inline", "processes", "ray"), "evaluator", ev.name, "choose inline, processes or ray")
    need(ev.n_workers >= 1, "evaluator.n_workers", ev.n_workers, "needs at least one worker")
    need(ev.start_method in ("forkserver", "spawn", "fork"), "evaluator.start_method", ev.start_method,
         "choose forkserver, spawn or fork")
    need(ev.timeout >= 0, "evaluator.timeout", ev.timeout, "must be >= 0 seconds (0 = no limit)")
    need(ev.retries >= 0, "evaluator.retries", ev.retries, "must be >= 0")
    need(ev.max_failures >= 0, "evaluator.max_failures", ev.max_failures, "must be >= 0 (0 = never stop)")
    evo = cfg.evolution
    need(evo.every >= 0, "evolution.every", evo.every, "must be >= 0 (0 turns evolution off)")
    need(evo.parents >= 1, "evolution.parents", evo.parents, "needs at least one parent")
    need(evo.children >= 1, "evolution.children", evo.children, "needs at least one fork per parent")
    need(0 < evo.eta <= 1, "evolution.eta", evo.eta, "must lie in (0, 1]")
    need(0 <= evo.widen <= 1, "evolution.widen", evo.widen, "is a probability")
    need(0 < evo.error_smoothing <= 1, "evolution.error_smoothing", evo.error_smoothing, "must lie in (0, 1]")
    need(cfg.strategy.name in STRATEGIES, "strategy", cfg.strategy.name, f"choose from {list(STRATEGIES)}")


ACTIVATIONS = {"tanh", "relu", "silu", "gelu", "sigmoid"}
OPTIMIZERS = ("adam", "rmsprop", "rprop")
STRATEGIES = ("nes", "sgd", "es", "nes_es", "random", "sobol", "cmaes", "snes", "xnes", "pgpe", "tpe", "gp")

__all__ = [
    "AppConfig", "EnsembleConfig", "EvaluatorConfig", "EvolutionConfig", "OptimizerConfig", "ProblemConfig",
    "SearchConfig",
    "StrategyConfig", "TrackingConfig", "make_config", "MISSING",
]
