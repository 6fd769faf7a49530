"""Structured configuration: one dataclass per config group, shared by the Hydra app and the API.

The same dataclasses type-check the YAML files in ``conf/`` (through Hydra's ConfigStore, see
``app.py``) and the ``config=`` / ``**overrides`` of the Python API, so a misspelt key fails at
start in both places. This module imports OmegaConf (a small dependency of Hydra) but not Hydra.
"""

from __future__ import annotations

import dataclasses
import numbers
import warnings
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
    activations: list[str] = field(default_factory=lambda: ["tanh", "silu", "relu"])  # one per member in turn
    optimizers: list[str] = field(default_factory=lambda: ["adam", "rmsprop", "rprop"])  # in blocks of members
    lr_min: float = 3e-3  # learning rates are drawn log-uniformly in [lr_min, lr_max]
    lr_max: float = 1e-2  # (upper end of the learning-rate range)
    weight_decay_min: float = 1e-5  # decoupled weight decay, log-uniform
    weight_decay_max: float = 1e-3  # (upper end)
    sparsity_min: float = 0.0  # fraction of each weight matrix zeroed by a fixed mask
    sparsity_max: float = 0.2  # (upper end)
    y_transform: str = "rank"  # standardize | rank (Gaussian copula of ranks, robust to outliers)
    train_steps_initial: int = 400  # steps after the initial design
    train_steps: int = 80  # warm-started steps after each round of new evaluations
    batch_size: int = 128  # full batch up to this pool size, per-member minibatches beyond it
    bootstrap: bool = True  # each member weighs samples by its own Poisson(1) draw (bagging)


@dataclass
class AscentConfig:
    """Gradient ascent of every member on its own surrogate."""

    lr: float = 0.02  # Adam step on x in the unit cube
    random_starts: int = 32  # random ascent starts per member besides the siblings' best points, for exploration
    # (32 measured better than 4 on 6 of 8 test problems)
    radius: float = 0.0  # ascents stay within this distance (per coordinate, unit cube) of their start; 0 = anywhere
    short_radius: float = 0.05  # the radius of a short run (one whose rounds search.min_rounds shrinks) when radius
    # is 0: as good or better on 5 of 5 short-budget problems, worse at 200-300 evaluations
    steps_max: int = 60  # ascent steps while the networks are not trusted
    steps_min: int = 8  # the fewest ascent steps the schedule shrinks to
    shrink: float = 0.7  # steps *= shrink after a successful round, /= shrink otherwise
    success_target: float = 0.2  # fraction of a round's ascent proposals that must improve on their start


@dataclass
class RegionsConfig:
    """Runner-up regions (opt-in): other basins climbed beside the best one, each by its own share of members."""

    basins: int = 1  # regions searched at once: the best one and basins - 1 runners-up (2 with share 0.4 finds
    # Hartmann-6's global basin on 14 of 20 seeds against 10, but costs Ackley and Rastrigin)
    share: float = 0.3  # fraction of the members that climb from the runners-up, each in a box of half-width
    # radius around its region's best point
    until: float = 1.0  # the regions close once this fraction of a known budget is evaluated
    patience: int = 0  # a region that has not gained for this many rounds closes for good; 0 = never
    radius: float = 0.15  # regions are distinct when their best points lie this far apart (times sqrt(dim))


@dataclass
class RestartsConfig:
    """Restarts (opt-in): leave a basin where the search stagnates, and explore afresh."""

    patience: int = 0  # rounds without gain before the search leaves its basin; 0 = never
    radius: float = 0.1  # a basin left behind is this radius (times sqrt(dim)) around its best point
    points: int = 0  # space-filling points after a restart; 0 = half the initial design


@dataclass
class PolishConfig:
    """The polishing step: a Newton step on a quadratic fitted to the evaluations nearest the best point."""

    enabled: bool = True  # once there are enough evaluations, the round's refinement of the best point is the
    # maximizer of the quadratic (instead of a Gaussian sample around it)
    min_fit: float = 0.99  # the share of the neighbours' variance the quadratic must explain (R^2), else no step


@dataclass
class OriginalConfig:
    """The original Go scheme (search.mode=original): every ascent step evaluated; per-member windows."""

    steps: int = 10  # ascent steps per path, each a real evaluation
    step_size: float = 0.001  # along the normalized gradient, in the unit cube
    patience: int = 2  # a path is abandoned after this many steps without gain
    gaussian: int = 10  # Gaussian samples around each sibling's best point, per member and round
    sigma: float = 0.01  # step of the Gaussian proposals around a path's point
    windows: bool = False  # per-member windows over the pool, rotated (the Go benchmark's scheme; any mode)
    window_size: int = 0  # 0 = rotate_every / members, rounded down to tens (at least 10)
    rotate_every: int = 300  # evaluations between window rotations


@dataclass
class CMAConfig:
    """A CMA-ES over the networks' rounds: the refinements are its samples, and every proposal of a round is
    told to it (``nes_ensemble/proposers/cma_steps.py``)."""

    enabled: bool = True  # the refinements come from it, unless the objective is noisy (the repeat returned
    # another value); off: Gaussian steps around the members' best points, sized by the 1/5 success rule
    sigma: float = 0.2  # its first step (unit cube), around the best point when the networks take over


@dataclass
class KernelConfig:
    """Gaussian-process members propose the first evaluations after the design, by expected improvement."""

    until: int = 150  # they propose while the pool holds fewer successful evaluations than this; 0 = never
    members: int = 1  # Gaussian-process members (more than one: each on its own bootstrap of the pool)
    per_round: int = 1  # proposals per round (each fantasized at its predicted mean before the next)
    y_transform: str = "standardize"  # targets: standardized values (standardize) or normal scores of ranks (rank)
    design: int = 0  # the initial design when search.n_init is 0 and the phase is on; 0 = max(10, dim + 1)
    candidates: int = 1024  # Sobol candidates whose best start the climbs of expected improvement
    starts: int = 10  # climbs per proposal: the best candidates and the best point so far
    ascent_steps: int = 100  # Adam steps of each climb, the step shrinking from 0.05 to 1e-4
    restart_after: int = 30  # a restart once the best since the last one has not risen (by 0.1% of the range of
    # the values) for this many evaluations: a fresh Latin hypercube of dim + 1 points, and the members fitted to
    # the evaluations since then only (a stuck basin is left, as in TuRBO); 0 = never
    restart_from: int = 100  # ... but not before the pool holds this many successful evaluations (restarting
    # earlier leaves basins before they are polished: Hartmann-6 at 100 evaluations got worse)
    polish: float = 0.999  # between expected-improvement proposals, a polishing step (the quadratic of
    # search.polish fitted to the evaluations nearest the best point) where one explains this share of their
    # variance: every other round after a step that improved on the best, backing off to every 16th round while
    # they fail; never on a noisy objective; 0 = never
    restart_room: int = 150  # ... and only while a known budget leaves at least this many evaluations after the
    # restart (a run of 150 lost on all six test problems when the last 50 could restart); unknown budget: always
    feasibility: bool = True  # where evaluations have failed, expected improvement is weighed by the chance of
    # success, learnt from which evaluations failed (members/feasibility.py), and the networks' ascents never end
    # where evaluations are taken to fail; off: failures are only left out


@dataclass
class SearchConfig:
    """How the networks are turned into proposals."""

    mode: str = "surrogate"  # surrogate: ascents run on the networks | original: each step evaluated
    init_design: str = "lhs"  # lhs (a Latin hypercube) | sobol | random
    n_init: int = 0  # initial design size; 0 = auto (max(10, dim + 1) before the kernel phase, else
    # max(20, 6 * dim); at most budget / 4)
    proposals_per_round: int = 10  # ascent proposals per round, at most one per member; 0 = one per member (with
    # 30 members, 10 reach x* to 1.8e-8 at 1000 Hartmann-6 evaluations against 1.3e-5: more rounds, more polishing)
    gaussian_per_round: int = 4  # refinements per round: the polishing step and the CMA-ES's samples and mean
    # (search.cma; with it off, Gaussian samples around the members' best points)
    min_rounds: int = 10  # when the budget is known and too short for this many rounds of the sizes above after
    # the initial design, rounds shrink in proportion (at least one ascent and one Gaussian proposal); 0 = never
    select: str = "mean"  # which of a member's ascent end points it proposes: the best by the population's mean
    # prediction (mean, measured better on 6 of 6 test problems), by its own (own), or mean + beta * spread (ucb)
    beta: float = 1.0  # select=ucb: weight of the members' disagreement (std of their predictions)
    assignment: str = "best"  # best: a member proposes its best end point | rotate: from sibling r+round
    sigma_init: float = 0.05  # Gaussian step in the unit cube, adapted by the 1/5 success rule
    sigma_min: float = 1e-4  # the Gaussian step never shrinks below this
    sigma_max: float = 0.3  # ... and never grows above this
    min_distance: float = 1e-4  # proposals closer than this to an evaluated point are jittered
    ascent: AscentConfig = field(default_factory=AscentConfig)
    regions: RegionsConfig = field(default_factory=RegionsConfig)
    restarts: RestartsConfig = field(default_factory=RestartsConfig)
    polish: PolishConfig = field(default_factory=PolishConfig)
    original: OriginalConfig = field(default_factory=OriginalConfig)
    kernel: KernelConfig = field(default_factory=KernelConfig)
    cma: CMAConfig = field(default_factory=CMAConfig)
    repeat: int = 1  # evaluations that repeat the best design point (tells noise from roughness, see README)


# search keys of the previous version (flat) and where they live now; accepted, with a warning, for one version
RENAMED = {
    "ascent_lr": "ascent.lr", "random_starts": "ascent.random_starts", "ascent_radius": "ascent.radius",
    "short_radius": "ascent.short_radius", "ascent_steps_max": "ascent.steps_max",
    "ascent_steps_min": "ascent.steps_min", "ascent_shrink": "ascent.shrink",
    "success_target": "ascent.success_target", "basins": "regions.basins", "basin_share": "regions.share",
    "basins_until": "regions.until", "region_patience": "regions.patience", "basin_radius": "regions.radius",
    "restart_patience": "restarts.patience", "restart_radius": "restarts.radius",
    "restart_points": "restarts.points", "polish": "polish.enabled", "original_steps": "original.steps",
    "original_step_size": "original.step_size", "original_patience": "original.patience",
    "original_gaussian": "original.gaussian", "original_sigma": "original.sigma", "windows": "original.windows",
    "window_size": "original.window_size", "rotate_every": "original.rotate_every",
}


@dataclass
class KernelEvolutionConfig:
    """Generations of the Gaussian-process members (``kernel_evolution``): their genes forked, each fork scored on
    the newest evaluations, and the parent moved toward the forks that predicted them better than it did."""

    every: int = 0  # successful evaluations between generations; 0 = a tenth of a known budget (at least 8, 20
    # when the budget is not known); -1 = never
    children: int = 4  # forks per member
    eta: float = 1.0  # merge step: parent += eta * sum_i w_i (fork_i - parent); w: the forks' gains over the parent
    sigma_warp: float = 0.25  # fork perturbation of the output warp's power (in [0, 1]; 1 = standardized values)
    sigma_prior: float = 0.7  # of the log strength of the length-scale prior
    sigma_floor: float = 1.0  # of the log noise floor
    switch_family: float = 0.2  # probability that a fork takes another kernel family (Matern-5/2, -3/2, RBF)
    clip: float = 1.0  # a fork's gain over its parent: the log-density differences on the held-out evaluations,
    # each clipped to +-clip nats, summed (one badly predicted evaluation decides nothing alone); 0 = not clipped
    evidence: float = 1.0  # nats: the merge moves the parent by eta * G / (G + evidence) of the way, G the forks'
    # summed gains (a fork that gained a hundredth of a nat moves it a hundredth as far); 0 = the whole way


@dataclass
class EvolutionConfig:
    """The population manager of ``strategy=nes``: fork, train forks apart, NES-weighted merge, replace."""

    every: int = 40  # evaluations between generations; 0 = never
    parents: int = 3  # members forked per generation (the best by test-then-train error)
    children: int = 4  # forks per parent
    fork_steps: int = 80  # training steps of the forks, on the pool without its newest evaluations
    eta: float = 1.0  # merge step: parent += eta * sum_i w_i (fork_i - parent)
    weights: str = "gain"  # the merge weights w: gain (each fork's gain over its parent on the newest
    # evaluations, scaled by G / (G + evidence) as evolution.kernel's are: a generation no fork won leaves the
    # parent as it was) | rank (the NES rank utilities of the forks, summing to one: the parent always moves)
    clip: float = 1.0  # weights=gain: the per-evaluation gains (nats, the squared errors' difference over twice
    # the parent's mean squared error) clipped to +-clip; 0 = not clipped
    evidence: float = 1.0  # weights=gain: nats of summed gain for half the step; 0 = the whole way
    sigma_lr: float = 0.3  # fork perturbation of log learning rate
    sigma_weight_decay: float = 0.5  # of log weight decay
    sigma_sparsity: float = 0.05  # of the sparsity (fraction of weights masked)
    widen: float = 0.25  # probability that a fork doubles its hidden width (up to the widest of ensemble.widths)
    replace_factor: float = 2.0  # a member whose error exceeds this times the best's becomes a copy of it; 0 = never
    error_smoothing: float = 0.3  # weight of the newest test-then-train error in each member's moving average
    kernel: KernelEvolutionConfig = field(default_factory=KernelEvolutionConfig)  # the Gaussian-process members'
    share_min: float = 0.1  # the networks' least share of the proposals while Gaussian-process members propose
    # (search.kernel.until); their share follows both kinds' measured fitness (``allocation``)
    share_max: float = 0.0  # ... and their largest (0: the fixed allocation, networks only after kernel.until)
    share_window: int = 20  # the proposals and predictions of each kind that its fitness is measured on


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
    timeout: float = 0.0  # seconds one evaluation may take (inline: main thread only; processes / ray: the worker
    # is stopped and the point recorded as failed); 0 = no limit
    retries: int = 0  # re-evaluations of a point whose evaluation raised or timed out
    max_failures: int = 10  # consecutive failed evaluations after which the run stops; 0 = never


@dataclass
class StrategyConfig:
    """Which algorithm proposes points: the network population (nes, sgd, es, nes_es) or a baseline.

    nes: SGD-trained members with evolution (fork / merge) on top (the default); sgd: SGD-trained, no
    evolution; es: members trained by evolution strategies (PGPE) instead of back-propagation, no
    evolution; nes_es: ES-trained members with evolution on top.
    """

    name: str = "nes"  # nes | sgd | es | nes_es, or a baseline: random sobol cmaes snes xnes pgpe tpe ogp gp
    es_popsize: int = 16  # es, nes_es: candidate networks per member per generation (antithetic pairs)
    es_stdev: float = 0.02  # initial standard deviation of the weight perturbations
    es_lr: float = 0.02  # Adam step of each member's centre
    stdev_init: float = 0.25  # cmaes, snes, xnes, pgpe: initial step size in the unit cube (a quarter of the range)


@dataclass
class ProblemConfig:
    """The objective. Built-in problems by name, or ``callable`` with an import path and bounds."""

    name: str = "hartmann6"  # a built-in problem (see the problem group), read_cluster, or callable
    dim: int = 0  # for problems of any dimension (ackley, levy, ...); 0 = the problem's default
    noise_std: float = 0.0  # Gaussian noise added to every evaluation
    fn: str = ""  # callable: "package.module.function"
    bounds: Any = None  # callable: [[low, high], ...]
    space: Any = None  # callable, instead of bounds: {name: {type: float | int | categorical, low, high, log, choices}}
    batched: bool = False  # callable: fn maps [m, n] to [m]
    direction: str = "maximize"  # callable: maximize | minimize
    optimum: Any = None  # callable: known best value, if any, to report regret
    workload: str = "steady"  # read_cluster: steady | bursty | hotspot
    typed: bool = False  # read_cluster: its named knobs (log temperature, integer latency memory), not the box


@dataclass
class TrackingConfig:
    """Where runs are recorded. The algorithm never sees this; only the app's tracker does."""

    enabled: bool = True  # record the run in MLflow (tracking=off turns it off)
    uri: str = ""  # empty: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db at the project root
    experiment: str = "nes_ensemble"  # the MLflow experiment the runs go to
    run_name: str = ""  # empty: named for what it is, e.g. nes-hartmann6-k10-s3
    all_forks: bool = False  # also a lineage run for each fork merged back with no weight (the merge records it anyway)


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
    budget: int = 300  # evaluations in all
    seed: int = 0  # one seed fixes every random draw of the run
    progress: bool = True  # show the progress bar
    resume: str = ""  # the run directory of an interrupted run to continue (its own config is used)
    threads: int = 1  # torch CPU threads per run (1 keeps parallel sweep jobs from fighting over cores)


_GROUPS = ("strategy", "ensemble", "search", "evolution", "evaluator")


def dotted_keys(cls: type = AppConfig, prefix: str = "") -> list[str]:
    """Every setting of the config dataclass ``cls`` as a dotted key (``search.kernel.until``), groups included."""
    out = []
    for f in dataclasses.fields(cls):
        out.append(prefix + f.name)
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            out += dotted_keys(factory, f"{prefix}{f.name}.")
    return out


def did_you_mean(key: str, known: list[str] | None = None) -> str:
    """`` (did you mean search.mode?)`` for a misspelt dotted ``key``, or "" when nothing is close."""
    import difflib

    known = dotted_keys() if known is None else known
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if not close:  # a right group with a misspelt last part, or the reverse: compare the ends too
        ends = {k.rsplit(".", 1)[-1]: k for k in known if k.count(".") == key.count(".")}
        near = difflib.get_close_matches(key.rsplit(".", 1)[-1], list(ends), n=1, cutoff=0.75)
        close = [ends[near[0]]] if near else []
    return f" (did you mean {close[0]}?)" if close else ""


def make_config(config: Mapping[str, Any] | DictConfig | None = None, **overrides: Any) -> DictConfig:
    """Merge a user's config and keyword overrides into the typed defaults, rejecting unknown keys.

    Overrides may name a group (``search={"mode": "original"}``), a key inside a group with a
    double underscore (``search__mode="original"``) or a dotted string key (``**{"search.mode": ...}``).
    """
    base = OmegaConf.structured(OptimizerConfig)
    layers: list[Any] = []
    if config is not None:
        if not isinstance(config, (Mapping, DictConfig)):
            raise ValueError(f"config={config!r}: give a dict (or an OmegaConf DictConfig) of the keys in conf/, "
                             "e.g. {'budget': 100, 'search': {'kernel': {'until': 0}}}")
        cfg = OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)
        app_only = set(OmegaConf.structured(AppConfig).keys()) - set(base.keys())
        unknown = [k for k in cfg if k not in base and k not in app_only]
        if unknown:
            raise ValueError(f"unknown setting {unknown[0]!r} in config{did_you_mean(str(unknown[0]))}: the known "
                             f"keys are {', '.join(sorted(base.keys()))}")
        # an app config carries more groups than the optimizer reads; keep only what it reads
        layers.append({k: {"name": v} if k in ("strategy", "evaluator") and isinstance(v, str) else v
                       for k, v in cfg.items() if k in base})
    for key, value in overrides.items():
        if key in ("strategy", "evaluator") and isinstance(value, str):  # a group by its name, as optimize() takes
            value = {"name": value}
        path = key.replace("__", ".").split(".")
        if path[0] not in base:
            known = ", ".join(sorted(base.keys()))
            raise ValueError(f"unknown setting {key!r}{did_you_mean('.'.join(path))}: the known groups and keys are "
                             f"{known}")
        node: Any = value
        for part in reversed(path[1:]):
            node = {part: node}
        layers.append({path[0]: node})
    layers = [_renamed(layer) for layer in layers]
    for layer in layers:
        _check_groups(base, layer)
    try:
        merged = OmegaConf.merge(base, *layers)
    except ConfigKeyError as err:
        full = str(getattr(err, "full_key", "") or getattr(err, "key", ""))
        raise ValueError(f"unknown setting {full!r}{did_you_mean(full)}") from None
    except ValidationError as err:
        msg = str(err.msg if hasattr(err, "msg") else err).splitlines()[0]
        full = str(getattr(err, "full_key", "") or "")
        raise ValueError(f"bad configuration: {full + ': ' if full else ''}{msg}") from None
    check(merged)
    return merged


def _check_groups(base: DictConfig, layer: Mapping[str, Any], prefix: str = "") -> None:
    """A ValueError naming the key where ``layer`` gives a plain value for a group of settings (OmegaConf's own
    message names neither the key nor what was expected)."""
    for key, value in layer.items():
        if not isinstance(key, str) or key not in base:
            continue  # an unknown key: the merge names it, with a suggestion
        known = base[key] if not OmegaConf.is_missing(base, key) else None
        if isinstance(known, DictConfig):
            if not isinstance(value, (Mapping, DictConfig)):
                raise ValueError(f"{prefix}{key}={value!r}: {prefix}{key} is a group of settings; give a dict of "
                                 f"its keys ({', '.join(sorted(map(str, known.keys())))})")
            _check_groups(known, value, f"{prefix}{key}.")


def _renamed(layer: dict[str, Any]) -> dict[str, Any]:
    """``layer`` with search keys of the previous version moved to their groups (``search.basins`` ->
    ``search.regions.basins``), each with a FutureWarning that names the new key."""
    search = layer.get("search")
    if not isinstance(search, Mapping) or not any(k in RENAMED and not isinstance(v, Mapping)
                                                   for k, v in search.items()):
        return layer
    moved: dict[str, Any] = {}
    for key, value in search.items():
        if key not in RENAMED or isinstance(value, Mapping):
            moved[key] = value
            continue
        group, name = RENAMED[key].split(".")
        warnings.warn(f"search.{key} is now search.{RENAMED[key]}; the old name goes in the next version",
                      FutureWarning, stacklevel=4)
        moved.setdefault(group, {})
        moved[group] = {**moved[group], name: value} if isinstance(moved[group], Mapping) else moved[group]
    return {**layer, "search": moved}


COUNTS = ("ensemble.train_steps_initial", "ensemble.train_steps", "ensemble.batch_size",
          "search.proposals_per_round", "search.gaussian_per_round", "search.restarts.points",
          "search.original.patience", "search.original.gaussian", "search.original.window_size",
          "search.original.rotate_every", "search.kernel.ascent_steps", "search.kernel.design",
          "search.kernel.restart_after", "search.kernel.restart_from", "search.kernel.restart_room",
          "evolution.fork_steps", "evaluator.ray_cpus")


# Sizes of what a round builds or plans (members, layers, proposals): a value past these is a typo or a crafted
# file, and would exhaust memory or plan for days before failing; any other count stops at COUNT_MAX.
SIZE_MAX = {"ensemble.members": 10_000, "ensemble.widths": 65_536, "ensemble.depths": 100,
            "strategy.es_popsize": 100_000, "search.proposals_per_round": 10_000,
            "search.gaussian_per_round": 10_000, "search.ascent.random_starts": 100_000,
            "search.regions.basins": 1_000, "search.kernel.members": 1_000, "search.kernel.per_round": 10_000,
            "search.kernel.candidates": 10_000_000, "search.kernel.starts": 100_000, "evolution.parents": 10_000,
            "evolution.children": 10_000, "evolution.kernel.children": 10_000, "evaluator.n_workers": 100_000}
COUNT_MAX = 10**9  # steps, rounds and evaluations (the budget is not capped)


def _check_sizes(cfg: DictConfig, node: Any = None, prefix: str = "") -> None:
    """Every whole-number setting at most its SIZE_MAX (else COUNT_MAX), with a ValueError naming the key."""
    node = cfg if node is None else node
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, DictConfig):
            _check_sizes(cfg, value, name + ".")
            continue
        values = list(value) if OmegaConf.is_list(value) else [value]
        if name == "budget" or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            continue
        limit = SIZE_MAX.get(name, COUNT_MAX)
        _need(max(values, default=0) <= limit, name, value, f"must be at most {limit:,}")


def _need(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r}: {why}")


def check_seed(seed: Any) -> int:
    """``seed`` as an int, or a ValueError naming it: a whole number from 0 to 2**63 - 1 (what numpy and torch
    both accept); 1.7 or '3' are refused rather than silently turned into another seed."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
        raise ValueError(f"seed={seed!r}: must be a whole number from 0 to 2**63 - 1 (or None: a fresh seed)")
    return int(seed)


def check_budget(budget: Any, unknown_ok: bool = False) -> int:
    """``budget`` as an int, or a ValueError naming it: a positive number of evaluations (0 = unknown where
    ``unknown_ok``); True or 2.5 are refused."""
    low = 0 if unknown_ok else 1
    if isinstance(budget, bool) or not isinstance(budget, numbers.Integral) or budget < low:
        raise ValueError(f"budget={budget!r}: must be a whole number of evaluations >= {low}"
                         + (" (0: not known)" if unknown_ok else ""))
    return int(budget)


def check(cfg: DictConfig) -> None:
    """Reject values that type-check but make no sense, with a message that names the key."""
    ens, need = cfg.ensemble, _need
    check_budget(cfg.budget, unknown_ok=True)
    _check_sizes(cfg)
    need(cfg.strategy.name in STRATEGIES, "strategy", cfg.strategy.name, f"choose from {list(STRATEGIES)}")
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
    st = cfg.strategy
    need(st.es_popsize >= 2 and st.es_popsize % 2 == 0, "strategy.es_popsize", st.es_popsize,
         "must be an even number >= 2 (samples come in antithetic pairs)")
    need(st.es_stdev > 0 and st.es_lr > 0, "strategy.es_stdev/es_lr", (st.es_stdev, st.es_lr), "must be positive")
    need(not cfg.budget or cfg.search.n_init <= cfg.budget, "search.n_init", cfg.search.n_init,
         f"the initial design needs more evaluations than budget={cfg.budget}; lower search.n_init or raise budget")
    _check_search(cfg.search)
    _check_evaluator(cfg.evaluator)
    for key in COUNTS:  # counts and sizes, where 0 means "none" or "automatic" but below 0 means nothing
        value = OmegaConf.select(cfg, key)
        need(value >= 0, key, value, "must be >= 0")
    evo = cfg.evolution
    need(evo.every >= 0, "evolution.every", evo.every, "must be >= 0 (0 turns evolution off)")
    need(evo.parents >= 1, "evolution.parents", evo.parents, "needs at least one parent")
    need(evo.children >= 1, "evolution.children", evo.children, "needs at least one fork per parent")
    need(0 < evo.eta <= 1, "evolution.eta", evo.eta, "must lie in (0, 1]")
    need(evo.weights in ("rank", "gain"), "evolution.weights", evo.weights, "choose rank or gain")
    need(evo.clip >= 0, "evolution.clip", evo.clip, "must be >= 0 (0: gains not clipped)")
    need(evo.evidence >= 0, "evolution.evidence", evo.evidence, "must be >= 0 (0: merges go the whole way)")
    need(0 <= evo.widen <= 1, "evolution.widen", evo.widen, "is a probability")
    need(0 < evo.error_smoothing <= 1, "evolution.error_smoothing", evo.error_smoothing, "must lie in (0, 1]")
    need(0 <= evo.share_min <= 1 and 0 <= evo.share_max <= 1 and (evo.share_max == 0 or evo.share_min <= evo.share_max),
         "evolution.share_min/share_max", (evo.share_min, evo.share_max),
         "need shares in [0, 1] and share_min <= share_max (share_max 0: the fixed allocation)")
    need(evo.share_window >= 5, "evolution.share_window", evo.share_window, "must be >= 5")
    kev = evo.kernel
    need(kev.every >= -1, "evolution.kernel.every", kev.every, "must be >= -1 (0 = sized to the budget, -1 = never)")
    need(kev.children >= 1, "evolution.kernel.children", kev.children, "needs at least one fork per member")
    need(0 < kev.eta <= 1, "evolution.kernel.eta", kev.eta, "must lie in (0, 1]")
    need(0 <= kev.switch_family <= 1, "evolution.kernel.switch_family", kev.switch_family, "is a probability")
    need(min(kev.sigma_warp, kev.sigma_prior, kev.sigma_floor) >= 0, "evolution.kernel.sigma_*",
         (kev.sigma_warp, kev.sigma_prior, kev.sigma_floor), "must be >= 0")
    need(kev.clip >= 0, "evolution.kernel.clip", kev.clip, "must be >= 0 (0: gains not clipped)")
    need(kev.evidence >= 0, "evolution.kernel.evidence", kev.evidence, "must be >= 0 (0: merges go the whole way)")


def _check_search(search: DictConfig) -> None:
    need = _need
    need(search.select in ("own", "mean", "ucb"), "search.select", search.select, "choose own, mean or ucb")
    need(search.assignment in ("best", "rotate"), "search.assignment", search.assignment, "choose best or rotate")
    need(search.mode in ("surrogate", "original"), "search.mode", search.mode, "choose surrogate or original")
    need(search.init_design in ("sobol", "lhs", "random"), "search.init_design", search.init_design,
         "choose sobol, lhs or random")
    need(search.n_init >= 0, "search.n_init", search.n_init, "must be >= 0 (0 = sized automatically)")
    need(search.min_rounds >= 0, "search.min_rounds", search.min_rounds, "must be >= 0 (0 = rounds never shrink)")
    need(0 < search.sigma_min <= search.sigma_init <= search.sigma_max, "search.sigma_init", search.sigma_init,
         "need sigma_min <= sigma_init <= sigma_max, all positive")
    asc, reg, rst = search.ascent, search.regions, search.restarts
    need(asc.short_radius >= 0, "search.ascent.short_radius", asc.short_radius, "must be >= 0 (0 = no limit)")
    need(asc.radius >= 0, "search.ascent.radius", asc.radius, "must be >= 0 (0 = no limit)")
    need(0 < asc.shrink < 1, "search.ascent.shrink", asc.shrink, "must lie in (0, 1)")
    need(1 <= asc.steps_min <= asc.steps_max, "search.ascent.steps_min", asc.steps_min,
         "must be at least 1 and not exceed search.ascent.steps_max")
    need(asc.random_starts >= 0, "search.ascent.random_starts", asc.random_starts, "must be >= 0")
    need(reg.basins >= 1, "search.regions.basins", reg.basins, "must be >= 1 (1 = no runner-up regions)")
    need(0 <= reg.share < 1, "search.regions.share", reg.share, "must lie in [0, 1): the members' share in regions")
    need(reg.patience >= 0, "search.regions.patience", reg.patience, "must be >= 0 (0 = never close)")
    need(0 < reg.until <= 1, "search.regions.until", reg.until,
         "must lie in (0, 1]: the fraction of the budget after which runner-up regions close")
    need(rst.patience >= 0, "search.restarts.patience", rst.patience, "must be >= 0 (0 = never restart)")
    need(0 < search.polish.min_fit <= 1, "search.polish.min_fit", search.polish.min_fit, "must lie in (0, 1]")
    need(0 < search.cma.sigma <= 1, "search.cma.sigma", search.cma.sigma, "must lie in (0, 1] (unit cube)")
    need(search.original.steps >= 1, "search.original.steps", search.original.steps, "must be >= 1")
    need(search.repeat >= 0, "search.repeat", search.repeat, "must be >= 0")
    ker = search.kernel
    need(ker.until >= 0, "search.kernel.until", ker.until, "must be >= 0 (0 = the networks propose from the start)")
    need(ker.members >= 1, "search.kernel.members", ker.members, "needs at least one member")
    need(ker.per_round >= 1, "search.kernel.per_round", ker.per_round, "must be >= 1")
    need(0 <= ker.polish <= 1, "search.kernel.polish", ker.polish, "must lie in [0, 1] (0 = no polishing steps)")
    need(ker.y_transform in ("standardize", "rank"), "search.kernel.y_transform", ker.y_transform,
         "choose standardize or rank")
    need(ker.starts >= 1 and ker.candidates >= ker.starts, "search.kernel.starts", ker.starts,
         "must be >= 1 and at most search.kernel.candidates")


def _check_evaluator(ev: DictConfig) -> None:
    need = _need
    need(ev.name in ("inline", "processes", "ray"), "evaluator", ev.name, "choose inline, processes or ray")
    need(ev.n_workers >= 1, "evaluator.n_workers", ev.n_workers, "needs at least one worker")
    need(ev.start_method in ("forkserver", "spawn", "fork"), "evaluator.start_method", ev.start_method,
         "choose forkserver, spawn or fork")
    need(ev.timeout >= 0, "evaluator.timeout", ev.timeout, "must be >= 0 seconds (0 = no limit)")
    need(ev.retries >= 0, "evaluator.retries", ev.retries, "must be >= 0")
    need(ev.max_failures >= 0, "evaluator.max_failures", ev.max_failures, "must be >= 0 (0 = never stop)")


ACTIVATIONS = {"tanh", "relu", "silu", "gelu", "sigmoid"}
OPTIMIZERS = ("adam", "rmsprop", "rprop")
STRATEGIES = ("nes", "sgd", "es", "nes_es", "random", "sobol", "cmaes", "snes", "xnes", "pgpe", "tpe", "ogp", "gp")

__all__ = [
    "AppConfig", "AscentConfig", "CMAConfig", "EnsembleConfig", "EvaluatorConfig", "EvolutionConfig",
    "KernelEvolutionConfig", "OptimizerConfig",
    "OriginalConfig", "PolishConfig", "ProblemConfig", "RegionsConfig", "RestartsConfig", "SearchConfig",
    "StrategyConfig", "TrackingConfig", "make_config", "MISSING",
]
