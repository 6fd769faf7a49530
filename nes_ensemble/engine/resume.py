"""Resuming a run: an optimizer restored from its checkpoint, with what the journal recorded after it.

The checkpoint holds the whole state as of its writing; the journal holds every evaluation, also
those made after it. ``load`` restores the checkpoint, writes back into the journal what a damaged
journal lost, and tells the optimizer the journal's later rows again; ``rebuild`` makes the run from
the journal alone when the checkpoint is lost. Telling rows again re-plans, so the proposals they
answered come back, and the run goes on as if it had never stopped.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

from ..space import Space
from . import checkpoint
from .ledger import Ledger
from .pool import Journal


def load(cls: type, path: str | os.PathLike, journal: str | os.PathLike | None) -> Any:
    """The optimizer of class ``cls`` saved at ``path``, with the evaluations its journal holds beyond it.

    The journal is ``journal``, else the file of the saved journal's name in the checkpoint's own folder
    (the run folder); a path read from the checkpoint is never opened as it stands."""
    state = checkpoint.read(path)
    try:
        opt = _restore(cls, state)
    except Exception as err:  # a part that passed the format's checks and still does not fit this run
        raise ValueError(f"{os.fspath(path)}: a damaged checkpoint ({type(err).__name__}: {err})") from None
    opt.ledger.journal = _journal_of(path, state["ledger"]["journal"], journal)
    if opt.ledger.journal is not None:
        rows = Journal.read(opt.ledger.journal, opt.dim)
        _restore_journal(opt, {r["evaluation"] for r in rows})
        replay(opt, [r for r in rows if r["evaluation"] >= len(opt.pool)])
    return opt


def _restore(cls: type, state: dict[str, Any]) -> Any:
    saved = state["ledger"]
    space = Space.from_dict(state["space"]) if "space" in state else state["bounds"]
    opt = cls(space, config=state["config"], seed=state["seed"], direction=state["direction"])
    if state["proposer"]["name"] != opt.proposer.name:
        raise ValueError(f"it names the proposer {state['proposer']['name']!r} but its config the strategy "
                         f"{opt.proposer.name!r}")
    if state["proposer"]["state"] is None:  # an engine that cannot be saved: replay the pool into a fresh one
        if replay(opt, Ledger.rows_of(saved, opt.sign)):
            raise ValueError(f"its evaluations do not replay into strategy {opt.cfg.strategy.name}")
        opt.ledger.events, opt.ledger.seconds = list(saved["events"]), float(saved["seconds"])
    else:
        opt.generator.set_state(state["generators"]["torch"])
        opt.rng.bit_generator.state = state["generators"]["numpy"]
        opt.ledger.load_state_dict(saved)
        mismatch = _layout_mismatch(opt.proposer.state_dict(), state["proposer"]["state"], "proposer")
        if mismatch:
            raise ValueError(mismatch)
        opt.proposer.load_state_dict(state["proposer"]["state"])
        opt.ledger.requeue_pending()
    return opt


def _layout_mismatch(fresh: Any, saved: Any, where: str) -> str:
    """Where ``saved`` (a proposer's state read from a file) departs from the layout of ``fresh`` (the state of
    the same proposer just built): a tensor of another dtype or shape, a dict or list that is something else;
    "" when none does. Sizes that grow with the pool (0 in ``fresh``) are not compared, keys missing on
    either side neither (the proposer's own loading reports a missing key)."""
    if isinstance(fresh, torch.Tensor):
        if not isinstance(saved, torch.Tensor) or saved.dtype != fresh.dtype or saved.dim() != fresh.dim() or \
                any(a and a != b for a, b in zip(fresh.shape, saved.shape)):  # (a size 0 grows with the pool)
            what = f"{saved.dtype} {list(saved.shape)}" if isinstance(saved, torch.Tensor) else type(saved).__name__
            return f"{where} is {what}, not {fresh.dtype} {list(fresh.shape)}"
        return ""
    if isinstance(fresh, dict):
        if not isinstance(saved, dict):
            return f"{where} is a {type(saved).__name__}, not a dict"
        for key in fresh.keys() & saved.keys():
            found = _layout_mismatch(fresh[key], saved[key], f"{where}.{key}")
            if found:
                return found
        return ""
    if isinstance(fresh, (list, tuple)) and not isinstance(saved, (list, tuple)):
        return f"{where} is a {type(saved).__name__}, not a list"
    return ""


def _journal_of(path: str | os.PathLike, saved: str | None, given: str | os.PathLike | None) -> str | None:
    """The journal a loaded run keeps: the caller's, else the saved one's name in the checkpoint's folder."""
    if given is not None:
        return os.path.abspath(os.fspath(given))
    if saved is None:
        return None
    name = os.path.basename(saved)
    here = os.path.join(os.path.dirname(os.path.abspath(os.fspath(path))), name)
    if name.endswith(".jsonl") and (os.path.abspath(saved) == here or os.path.isfile(here)):
        return here  # the run folder's own journal (also after the folder was moved)
    warnings.warn(f"{os.fspath(path)} was written with the journal {saved!r}, outside the checkpoint's folder; a "
                  f"path inside a checkpoint is not followed, so this run keeps no journal: pass "
                  f"Optimizer.load(..., journal=PATH) to continue one", stacklevel=3)
    return None


def rebuild(opt: Any, journal: str | os.PathLike) -> Any:
    """``opt`` (new, of the run's settings) told every evaluation of ``journal`` again, then keeping it."""
    replay(opt, Journal.read(journal, opt.dim))
    opt.ledger.journal = os.path.abspath(os.fspath(journal))
    return opt


def replay(opt: Any, rows: list[dict]) -> int:
    """Tell ``opt`` recorded rows again (see ``Ledger.replay``); returns how many were adopted as they are."""
    return opt.ledger.replay(rows, lambda: opt.ask_points(1)[0], opt.tell, lambda rest: _adopt(opt, rest))


def _adopt(opt: Any, rows: list[dict]) -> None:
    """Add recorded rows to the pool as they are, with the provenance they were evaluated with."""
    units = np.array([r["unit"] for r in rows], dtype=float)
    values = np.array([opt.sign * r["y"] for r in rows], dtype=float)
    start = opt.ledger.record(units, units, opt.sign * values, values,
                              [Ledger.provenance_of(r) for r in rows], [r["reason"] for r in rows])
    opt._observe(start, None)


def _restore_journal(opt: Any, indices: set[int]) -> None:
    """Write back the checkpoint's evaluations the journal lacks (a journal cut short, lines damaged), so the
    journal stays the whole record; warn, since the file was changed outside the run."""
    pool = opt.pool
    missing = [i for i in range(len(pool)) if i not in indices]
    journal = Journal(opt.ledger.journal)
    torn = journal.cut_torn_tail()
    if not missing and not torn:
        return
    if missing:
        units = pool.x[missing]
        journal.write([Journal.row(i, x, u, float(opt.sign * pool.y[i]), pool.reasons[i], pool.provenance[i])
                       for i, x, u in zip(missing, opt.box.to_native(units), units)])
    warnings.warn(f"{opt.ledger.journal}: {'a torn last line was removed; ' if torn else ''}"
                  f"{len(missing)} evaluations missing from it were written back from the checkpoint", stacklevel=4)
