"""The checkpoint file: an explicit format, written atomically, loaded without running pickled code.

Version 2 is a ``torch.save`` of plain values and tensors only::

    {"format": "nes_ensemble checkpoint", "version": 2,
     "config": {...}, "seed": int, "direction": "maximize" | "minimize", "bounds": [[low, high], ...],
     "generators": {"torch": ByteTensor, "numpy": PCG64 state},
     "ledger": {pool x / y / provenance / reasons, pending, queue, events, journal, seconds},
     "proposer": {"name": strategy, "state": {...} or None (rebuilt by replaying the pool)}}

so it loads with ``weights_only=True`` and no class name or module path is part of it. Version 1
(the pickled ``__dict__`` of the old single Optimizer class) is still read, by an unpickler that
admits exactly the classes version 1 wrote (numpy arrays and generators, torch tensors, builtins,
and our own old classes as plain records) and refuses anything else: loading a checkpoint never
runs code it carries. A checkpoint is untrusted input: what it holds is checked before use, and a
path inside it (the journal it was written with) is never opened on its word.
"""

from __future__ import annotations

import errno
import os
import pickle
import tempfile
import types
from typing import Any

import numpy as np
import torch

from .pool import is_number

FORMAT = "nes_ensemble checkpoint"
VERSION = 2


def write(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (a temporary file, fsynced, then renamed over it)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".checkpoint-")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, RuntimeError) and _full(folder):  # torch reports a full disk as a RuntimeError
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path) from None
        raise


def _full(folder: str) -> bool:
    """Whether the file system of ``folder`` has (next to) no room left."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 16 * 2**20


class UnsafeCheckpointError(ValueError):
    """A file that would run code (or build objects no nes_ensemble checkpoint holds) if it were unpickled."""


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path`` in the version-2 layout (a version-1 file is converted), checked.

    Raises ``UnsafeCheckpointError`` for a file that names a class or function no checkpoint holds
    (nothing of it is run), and ``ValueError`` for one that is damaged or not a checkpoint."""
    path = os.fspath(path)
    try:
        state = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception:  # not a version-2 file: perhaps version 1, whose objects need the legacy reader
        state = None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        if state.get("version") != VERSION:
            raise ValueError(f"{path}: a nes_ensemble checkpoint of version {state.get('version')!r}; this version "
                             f"of nes_ensemble reads versions 1 and {VERSION}")
        return _checked(path, state)
    try:
        legacy = torch.load(path, weights_only=False, pickle_module=_LEGACY)
    except _Refused as refused:
        raise UnsafeCheckpointError(
            f"{path}: refused: it names {refused.args[0]}, which no nes_ensemble checkpoint holds; unpickling it "
            f"could run code (nothing of it was run)") from None
    except Exception as err:
        raise ValueError(f"{path}: not a nes_ensemble checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(legacy, dict) or legacy.get("version") != 1:
        raise ValueError(f"{path}: not a nes_ensemble checkpoint")
    try:
        state = from_version1(legacy)
    except Exception as err:
        raise ValueError(f"{path}: a damaged version-1 checkpoint ({type(err).__name__}: {err})") from None
    return _checked(path, state)


def _checked(path: str, state: dict[str, Any]) -> dict[str, Any]:
    """``state`` once its parts have the types and shapes the format says; a ValueError naming the first that
    does not (a file edited by hand, or written by something else)."""
    problem = _problem(state)
    if problem:
        raise ValueError(f"{path}: a damaged checkpoint ({problem})")
    try:
        return with_settings_of_their_time(state)
    except ValueError as err:
        raise ValueError(f"{path}: a damaged checkpoint ({err})") from None


def _problem(state: dict[str, Any]) -> str:
    """What is wrong with the parts of a version-2 ``state`` (\"\" when nothing is)."""
    want = {"config": dict, "seed": int, "direction": str, "bounds": list, "generators": dict, "ledger": dict,
            "proposer": dict}
    for key, kind in want.items():
        if not isinstance(state.get(key), kind) or isinstance(state.get(key), bool):
            return f"{key!r} is missing or not a {kind.__name__}"
    if state["direction"] not in ("maximize", "minimize"):
        return f"direction {state['direction']!r}"
    bounds = state["bounds"]
    if not bounds or not all(isinstance(b, (list, tuple)) and len(b) == 2 and all(_real(v) for v in b)
                             for b in bounds):
        return "bounds are not pairs of finite numbers"
    if "space" in state and not isinstance(state["space"], dict):
        return "'space' is not a dict"
    if not isinstance(state["generators"].get("torch"), torch.Tensor) or \
            not isinstance(state["generators"].get("numpy"), dict):
        return "the random generators' states are missing"
    ledger, dim = state["ledger"], len(bounds)
    x, y = ledger.get("x"), ledger.get("y")
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or y.dim() != 1 or \
            tuple(x.shape) != (len(y), dim) or not x.is_floating_point() or not y.is_floating_point():
        return f"the pool is not x [n, {dim}] and y [n] of floats"
    if len(y) and not (torch.isfinite(x).all() and ((x >= -1e-9) & (x <= 1 + 1e-9)).all()):
        return "the pool holds points outside the unit cube"
    for key in ("provenance", "reasons"):
        if not isinstance(ledger.get(key), list) or len(ledger[key]) != len(y):
            return f"the pool's {key} are not one per evaluation"
    if not all(isinstance(p, dict) and isinstance(p.get("source"), str) for p in ledger["provenance"]):
        return "a provenance without its source"
    for key in ("pending", "queue", "events"):
        if not isinstance(ledger.get(key), list):
            return f"the ledger's {key!r} is missing"
    for p in ledger["pending"] + ledger["queue"]:
        if not isinstance(p, dict) or not _point(p.get("x"), dim) or ("asked" in p and not _point(p["asked"], dim)) \
                or not isinstance(p.get("source"), str):
            return "a pending or queued proposal is not a point of the box"
    if not (ledger.get("journal") is None or isinstance(ledger["journal"], str)) or not _real(ledger.get("seconds")):
        return "the ledger's journal or seconds"
    proposer = state["proposer"]
    if not isinstance(proposer.get("name"), str) or not (proposer.get("state") is None or
                                                          isinstance(proposer["state"], dict)):
        return "the proposer's name or state"
    return ""


def _real(v: Any) -> bool:
    return is_number(v) and bool(np.isfinite(v))


def _point(v: Any, dim: int) -> bool:
    return isinstance(v, list) and len(v) == dim and all(_real(c) for c in v)


# settings added since a checkpoint was written, with the values that keep its run what it was
ADDED_SETTINGS = {("search", "kernel", "until"): 0, ("search", "repeat"): 0,
                  ("search", "kernel", "restart_after"): 0, ("search", "cma", "enabled"): False,
                  ("evolution", "kernel", "every"): -1, ("search", "kernel", "polish"): 0.0,
                  ("evolution", "kernel", "clip"): 0.0, ("evolution", "kernel", "evidence"): 0.0,
                  ("evolution", "weights"): "rank", ("search", "kernel", "feasibility"): False}


def with_settings_of_their_time(state: dict[str, Any]) -> dict[str, Any]:
    """A saved run resumes as it was configured: a setting added later takes the value that reproduces the
    behaviour of the code that wrote it, not today's default."""
    for (*groups, key), value in ADDED_SETTINGS.items():
        node = state["config"]
        for depth, group in enumerate(groups):
            node = node.setdefault(group, {})
            if not isinstance(node, dict):
                raise ValueError(f"its config's {'.'.join(groups[:depth + 1])} is a {type(node).__name__}, "
                                 f"not a group of settings")
        node.setdefault(key, value)
    return state


# ------------------------------------------------------------------ version 1
class _Record:
    """Stands in for any class a version-1 file pickled: its attributes, nothing else."""


class _Refused(Exception):
    """A global that no version-1 checkpoint names (its dotted name in ``args[0]``)."""


# exactly the globals version 1 wrote (numpy's module under both of its names); our own old classes and
# omegaconf's nodes come back as plain records, everything else is refused before it is looked up
_RECORDS = {
    "nes_ensemble.config": {"OptimizerConfig", "EnsembleConfig", "EvaluatorConfig", "EvolutionConfig",
                            "SearchConfig", "StrategyConfig"},
    "nes_ensemble.evolution": {"Evolution"}, "nes_ensemble.pool": {"Provenance", "SamplePool"},
    "nes_ensemble.population": {"Layout", "Population"}, "nes_ensemble.search": {"Schedule"},
    "nes_ensemble.training": {"OptimizerState"},
    "omegaconf.base": {"ContainerMetadata", "Metadata"}, "omegaconf.dictconfig": {"DictConfig"},
    "omegaconf.listconfig": {"ListConfig"},
    "omegaconf.nodes": {"BooleanNode", "FloatNode", "IntegerNode", "StringNode", "AnyNode"},
}
_GLOBALS = {
    "builtins": {"bool", "bytes", "dict", "float", "list", "int", "str", "tuple", "set", "frozenset", "complex"},
    "__builtin__": {"bool", "bytes", "dict", "float", "list", "long", "int", "unicode", "str", "tuple", "set",
                    "frozenset", "complex"},
    "_codecs": {"encode"}, "collections": {"OrderedDict", "defaultdict"}, "typing": {"Any", "List", "Dict"},
    "numpy": {"dtype", "ndarray"}, "numpy.core.multiarray": {"_reconstruct", "scalar"},
    "numpy._core.multiarray": {"_reconstruct", "scalar"},
    "numpy.random._pickle": {"__bit_generator_ctor", "__generator_ctor"}, "numpy.random._pcg64": {"PCG64"},
    "numpy.random.bit_generator": {"SeedSequence", "__pyx_unpickle_SeedSequence"},
    "torch": {"device", "ByteStorage", "FloatStorage", "DoubleStorage", "LongStorage", "IntStorage", "BoolStorage"},
    "torch._C": {"Generator"}, "torch._utils": {"_rebuild_tensor_v2"},
}


class _LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _RECORDS.get(module, ()):
            return _Record
        if name not in _GLOBALS.get(module, ()):
            raise _Refused(f"{module}.{name}")
        return super().find_class(module, name)


def _legacy_load(file: Any, **kwargs: Any) -> Any:
    """``pickle.load`` through the allow-list (torch's legacy format reads its header pickles with it)."""
    return _LegacyUnpickler(file, **kwargs).load()


_LEGACY = types.SimpleNamespace(Unpickler=_LegacyUnpickler, load=_legacy_load, __name__="pickle")
_PROVENANCE = ("source", "member", "sibling", "round", "predicted", "reference", "path")
_BASELINE_STATE = ("random", "sobol", "gp")  # baselines whose version-2 state is their counters


def from_version1(old: dict[str, Any]) -> dict[str, Any]:
    """Convert the attributes of a version-1 Optimizer (or Baseline) to the version-2 layout."""
    cfg = old["cfg"]
    name = cfg["strategy"]["name"]
    return {"format": FORMAT, "version": VERSION, "config": cfg, "seed": int(old["seed"]),
            "direction": "maximize" if old["sign"] > 0 else "minimize",
            "bounds": np.asarray(old["bounds"], dtype=float).tolist(),
            "generators": {"torch": old["generator"], "numpy": old["rng"].bit_generator.state},
            "ledger": _ledger(old), "proposer": {"name": name, "state": _proposer(old, cfg, name)}}


def _provenance(p: Any) -> dict[str, Any]:
    return {k: _number(getattr(p, k)) for k in _PROVENANCE if hasattr(p, k)}


def _number(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _proposal(p: Any) -> dict[str, Any]:
    return {"x": [float(v) for v in p.x], **_provenance(p.provenance)}


def _ledger(old: dict[str, Any]) -> dict[str, Any]:
    pool = old["pool"]
    return {"x": torch.from_numpy(np.asarray(pool.x, dtype=float).copy()),
            "y": torch.from_numpy(np.asarray(pool.y, dtype=float).copy()),
            "provenance": [_provenance(p) for p in pool.provenance], "reasons": list(pool.reasons),
            "pending": [{"asked": [float(v) for v in x], **_proposal(p)} for x, p in old["pending"]],
            "queue": [_proposal(p) for p in old["queue"]], "events": list(old["events"]),
            "journal": old["journal_path"], "seconds": float(old["seconds"])}


def _proposer(old: dict[str, Any], cfg: dict[str, Any], name: str) -> dict[str, Any] | None:
    if old.get("kind") == "baseline":
        return {"round": int(old["round"]), "drawn": int(old["drawn"])} if name in _BASELINE_STATE else None
    pop, evo, st, sch = old["population"], old["evolution"], old["opt_state"], old["schedule"]
    n_regions = max(int(cfg["search"].get("basins", 1)) - 1, 0)
    fields = ("width", "depth", "act", "optimizer", "lr", "weight_decay", "sparsity", "generation", "mask", "theta")
    state = {
        "ensemble": {
            "population": {"layout": [pop.layout.dim, pop.layout.width, pop.layout.depth],
                           "act_names": list(pop.act_names), "ids": list(pop.ids),
                           **{f: getattr(pop, f) for f in fields}},
            "opt_state": {f: getattr(st, f) for f in ("t", "m", "v", "step", "prev")},
            "sample_weights": torch.from_numpy(np.asarray(old["sample_weights"], dtype=float).copy()),
            "trained_on": int(old["trained_on"]), "surrogate_error": float(old["surrogate_error"]),
            "evolution": {"error": torch.from_numpy(np.asarray(evo.error, dtype=float).copy()),
                          "next_id": evo.next_id, "last": evo.last, "generation": evo.generation,
                          "generator": evo.generator.get_state()}},
        "schedule": [float(sch.steps), float(sch.sigma), float(sch.success_rate)], "round": int(old["round"]),
        "ascent_tally": [int(v) for v in old["ascent_tally"]], "n_design": int(old["n_design"]), "designed": True,
        "regions": {"best": torch.from_numpy(np.asarray(old.get("region_best", np.full(n_regions, -np.inf)),
                                                        dtype=float).copy()),
                    "stall": torch.from_numpy(np.asarray(old.get("region_stall", np.zeros(n_regions)),
                                                         dtype=np.int64).copy())},
        "restarts": {"basins": torch.from_numpy(np.asarray(old["basins"], dtype=float).copy()),
                     "stall": int(old["stall"]), "last_best": float(old["last_best"])},
        "paths": [list(map(float, old["paths"][i])) for i in sorted(old["paths"])],
    }
    return state
