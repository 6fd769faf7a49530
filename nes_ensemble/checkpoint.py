"""The checkpoint file: an explicit format, written atomically, loaded without running pickled code.

Version 2 is a ``torch.save`` of plain values and tensors only::

    {"format": "nes_ensemble checkpoint", "version": 2,
     "config": {...}, "seed": int, "direction": "maximize" | "minimize", "bounds": [[low, high], ...],
     "generators": {"torch": ByteTensor, "numpy": PCG64 state},
     "ledger": {pool x / y / provenance / reasons, pending, queue, events, journal, seconds},
     "proposer": {"name": strategy, "state": {...} or None (rebuilt by replaying the pool)}}

so it loads with ``weights_only=True`` and no class name or module path is part of it. Version 1
(the pickled ``__dict__`` of the old single Optimizer class) is still read: its objects are
unpickled as plain records and converted to version 2.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import types
from typing import Any

import numpy as np
import torch

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
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path`` in the version-2 layout (a version-1 file is converted)."""
    path = os.fspath(path)
    try:
        state = torch.load(path, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception:  # not a version-2 file: perhaps version 1, whose objects need the legacy reader
        state = None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        if state.get("version") != VERSION:
            raise ValueError(f"{path}: a nes_ensemble checkpoint of version {state.get('version')}; this version "
                             f"of nes_ensemble reads versions 1 and {VERSION}")
        return with_settings_of_their_time(state)
    try:
        legacy = torch.load(path, weights_only=False, pickle_module=_LEGACY)
    except Exception as err:
        raise ValueError(f"{path}: not a nes_ensemble checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(legacy, dict) or legacy.get("version") != 1:
        raise ValueError(f"{path}: not a nes_ensemble checkpoint")
    return with_settings_of_their_time(from_version1(legacy))


# settings added since a checkpoint was written, with the values that keep its run what it was
ADDED_SETTINGS = {("search", "kernel", "until"): 0, ("search", "repeat"): 0,
                  ("search", "kernel", "restart_after"): 0, ("search", "cma", "enabled"): False}


def with_settings_of_their_time(state: dict[str, Any]) -> dict[str, Any]:
    """A saved run resumes as it was configured: a setting added later takes the value that reproduces the
    behaviour of the code that wrote it, not today's default."""
    for (*groups, key), value in ADDED_SETTINGS.items():
        node = state["config"]
        for group in groups:
            node = node.setdefault(group, {})
        node.setdefault(key, value)
    return state


# ------------------------------------------------------------------ version 1
class _Record:
    """Stands in for any class a version-1 file pickled: its attributes, nothing else."""


class _LegacyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] in ("nes_ensemble", "omegaconf"):
            return _Record
        return super().find_class(module, name)


_LEGACY = types.SimpleNamespace(Unpickler=_LegacyUnpickler, load=pickle.load, __name__="pickle")
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
