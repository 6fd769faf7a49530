"""Checkpoints and journals are untrusted input: loading never runs code, never follows a stored path,
and a file that parses but is wrong costs its own rows (or a rebuild from the journal), not the run."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import nes_ensemble as ne
from nes_ensemble.engine import checkpoint
from nes_ensemble.engine.pool import Journal

ROOT = Path(__file__).resolve().parents[1]
BOX = [(0.0, 1.0)] * 2
QUICK = {"search": {"n_init": 4}, "strategy": {"name": "random"}}


class Evil:
    """What an attacker pickles: unpickling it calls ``os.system`` (here: creates a file)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def _write_evil(path, target, how):
    payload = {"version": 1, "cfg": Evil(target)}
    if how == "zip":
        torch.save(payload, path)
    elif how == "legacy":
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(payload, f)


@pytest.mark.parametrize("how", ["zip", "legacy", "raw"])
def test_a_crafted_checkpoint_is_refused_and_runs_nothing(how, tmp_path):
    path, target = tmp_path / "checkpoint.pt", tmp_path / "PWNED"
    _write_evil(path, target, how)
    with pytest.raises(checkpoint.UnsafeCheckpointError, match=r"checkpoint.pt: refused: it names posix.system"):
        ne.Optimizer.load(path)
    assert not target.exists()


def test_a_crafted_version1_file_naming_one_of_our_modules_is_refused(tmp_path):
    path = tmp_path / "c.pt"

    class Sneaky:  # a function of our own package is no more welcome than os.system
        def __reduce__(self):
            from nes_ensemble.app import main as app
            return app.main, ()

    torch.save({"version": 1, "cfg": Sneaky()}, path)
    with pytest.raises(checkpoint.UnsafeCheckpointError, match="nes_ensemble.app.main.main"):
        ne.Optimizer.load(path)


@pytest.mark.parametrize("how", ["zip", pytest.param("legacy", marks=pytest.mark.slow),
                                 pytest.param("raw", marks=pytest.mark.slow)])
def test_resume_of_a_run_folder_with_a_crafted_checkpoint_refuses_in_one_line(how, tmp_path):
    run_dir, target = tmp_path / "run", tmp_path / "PWNED"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    args = [sys.executable, "-m", "nes_ensemble", "problem=branin", "budget=12", "strategy=random", "progress=false",
            "tracking.enabled=false"]
    first = subprocess.run([*args, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr
    _write_evil(run_dir / "checkpoint.pt", target, how)
    proc = subprocess.run([sys.executable, "-m", "nes_ensemble", f"resume={run_dir}", "budget=14",
                           f"hydra.run.dir={tmp_path / 'r'}"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode != 0 and not target.exists()
    err = proc.stderr.strip()
    assert "checkpoint.pt: refused" in err and "Traceback" not in err and len(err.splitlines()) <= 3, err
    assert len(Journal.read(run_dir / "evaluations.jsonl")) == 12  # nothing lost


def test_the_version1_checkpoints_we_wrote_still_load(tmp_path):
    for name in ("nes_v1", "cmaes_v1"):
        state = checkpoint.read(ROOT / "tests" / "reference" / "checkpoints" / name / "checkpoint.pt")
        assert state["version"] == 2 and len(state["ledger"]["y"]) > 0


def test_a_journal_path_inside_a_checkpoint_is_never_followed(tmp_path):
    victim = tmp_path / "elsewhere" / "precious.jsonl"
    victim.parent.mkdir()
    victim.write_text("do not touch\n")
    opt = ne.Optimizer(BOX, seed=0, config=QUICK, journal=tmp_path / "run" / "evaluations.jsonl")
    X = opt.ask(3)
    opt.tell(X, [1.0, 2.0, 3.0])
    opt.save(tmp_path / "run" / "checkpoint.pt")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    state["ledger"]["journal"] = str(victim)  # crafted: another file named as the journal
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    with pytest.warns(UserWarning, match="path inside a checkpoint is not followed"):
        loaded = ne.Optimizer.load(tmp_path / "run" / "checkpoint.pt")
    X = loaded.ask(2)
    loaded.tell(X, [0.0, 0.0])
    assert victim.read_text() == "do not touch\n" and loaded.ledger.journal is None


def test_a_journal_beside_its_checkpoint_is_kept_without_being_named(tmp_path):
    run = tmp_path / "run"
    opt = ne.Optimizer(BOX, seed=0, config=QUICK, journal=run / "evaluations.jsonl")
    opt.tell(opt.ask(3), [1.0, 2.0, 3.0])
    opt.save(run / "checkpoint.pt")
    moved = tmp_path / "moved"
    os.rename(run, moved)  # a run folder moved: its journal is found where the checkpoint is
    loaded = ne.Optimizer.load(moved / "checkpoint.pt")
    assert loaded.ledger.journal == str(moved / "evaluations.jsonl")
    loaded.tell(loaded.ask(1), [4.0])
    assert len(Journal.read(moved / "evaluations.jsonl")) == 4 and not run.exists()


def _run_with_journal(tmp_path, n=6):
    run = tmp_path / "run"
    opt = ne.Optimizer(BOX, seed=0, config=QUICK, journal=run / "evaluations.jsonl")
    for _ in range(n):
        x = opt.ask(1)
        opt.tell(x, [float(np.sum(x))])
    opt.save(run / "checkpoint.pt")
    return run, opt


BAD_ROWS = {
    "deep nesting": "[" * 100_000 + "]" * 100_000,
    "NaN in unit": json.dumps({"evaluation": 6, "unit": [float("nan"), 0.5], "x": [0, 0.5], "y": 1.0,
                               "source": "random", "reason": ""}),
    "no source": json.dumps({"evaluation": 6, "unit": [0.5, 0.5], "x": [0.5, 0.5], "y": 1.0, "reason": ""}),
    "wrong length": json.dumps({"evaluation": 6, "unit": [0.5, 0.5, 0.5], "x": [0.5, 0.5, 0.5], "y": 1.0,
                                "source": "random", "reason": ""}),
    "a list": json.dumps([1, 2, 3]),
    "y a string": json.dumps({"evaluation": 6, "unit": [0.5, 0.5], "x": [0.5, 0.5], "y": "high",
                              "source": "random"}),
}


@pytest.mark.parametrize("bad", list(BAD_ROWS))
def test_a_journal_row_that_parses_but_is_wrong_costs_that_row_only(bad, tmp_path):
    run, opt = _run_with_journal(tmp_path)
    os.remove(run / "checkpoint.pt")
    with open(run / "evaluations.jsonl", "a") as f:
        f.write(BAD_ROWS[bad] + "\n")
    with pytest.warns(UserWarning, match="1 line skipped, not a valid evaluation"):
        rebuilt = ne.Optimizer.rebuild(BOX, run / "evaluations.jsonl", config=QUICK, seed=0)
    assert rebuilt.n_evaluations == 6 and np.array_equal(rebuilt.pool.x, opt.pool.x)
    rebuilt.tell(rebuilt.ask(1), [0.5])  # and it goes on
    assert rebuilt.n_evaluations == 7


@pytest.mark.parametrize("damage", ["no schedule", "pool of another width", "a list", "seed a string",
                                    "pending outside the box", "a size no machine holds",
                                    "a group of settings a number", "a member's tensor of another shape",
                                    "a Gaussian-process length scale NaN"])
def test_a_checkpoint_that_loads_but_is_wrong_is_a_clear_error(damage, tmp_path):
    until = 20 if "Gaussian-process" in damage else 0  # (the Gaussian-process members propose, and are saved)
    opt = ne.Optimizer(BOX, seed=0, config={"search": {"kernel": {"until": until}}, "budget": 30,
                                           "ensemble": {"members": 2, "train_steps_initial": 5, "train_steps": 2}})
    opt.tell(opt.ask(6), np.arange(6.0))
    opt.ask(1)
    path = tmp_path / "checkpoint.pt"
    opt.save(path)
    state = torch.load(path, weights_only=True)
    if damage == "no schedule":
        del state["proposer"]["state"]["schedule"]
    elif damage == "pool of another width":
        state["ledger"]["x"] = torch.zeros(6, 3, dtype=torch.float64)
    elif damage == "a list":
        state = [1, 2, 3]
    elif damage == "seed a string":
        state["seed"] = "zero"
    elif damage == "a member's tensor of another shape":  # loaded, then failed at the next ask
        state["proposer"]["state"]["ensemble"]["population"]["width"] = torch.tensor([32])
    elif damage == "a Gaussian-process length scale NaN":
        state["proposer"]["state"]["kernel"]["members"]["log_inv_sq_scale"].fill_(float("nan"))
    elif damage == "a group of settings a number":
        state["config"]["search"] = -1
    elif damage == "a size no machine holds":  # planned for days (or out of memory) before failing, without a cap
        state["config"]["search"]["kernel"]["per_round"] = 10**12
    else:
        state["ledger"]["pending"][0]["x"] = [float("nan"), 0.5]
    torch.save(state, path)
    with pytest.raises(ValueError, match="checkpoint.pt: (a damaged checkpoint|not a nes_ensemble checkpoint)"):
        ne.Optimizer.load(path)


@pytest.mark.slow  # (suite time)
def test_a_damaged_checkpoint_with_its_journal_resumes_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    base = [sys.executable, "-m", "nes_ensemble", "progress=false", "tracking.enabled=false"]
    first = subprocess.run([*base, "problem=branin", "budget=10", "strategy=random", f"hydra.run.dir={run_dir}"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    del state["ledger"]["x"]
    torch.save(state, run_dir / "checkpoint.pt")
    with open(run_dir / "evaluations.jsonl", "a") as f:
        f.write(BAD_ROWS["no source"] + "\n")
    proc = subprocess.run([*base, f"resume={run_dir}", "budget=14", f"hydra.run.dir={tmp_path / 'r'}"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "a damaged checkpoint" in proc.stderr and "rebuilding the run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert [r["evaluation"] for r in Journal.read(run_dir / "evaluations.jsonl")] == list(range(14))

