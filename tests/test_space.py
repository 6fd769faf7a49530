"""Named, typed search spaces: settings go in and come out as native values, integers stay whole,
choices stay choices, log scales are searched in log space, warm starts and foreign evaluations count."""

import numpy as np
import pytest

import nes_ensemble as ne
from nes_ensemble.space import Space

SPACE = {"threads": ne.Int(1, 64, log=True), "policy": ne.Categorical(["fifo", "lifo", "random"]),
         "timeout_s": ne.Float(0.01, 10.0, log=True), "weight": ne.Float(0.0, 1.0), "depth": ne.Int(2, 9)}
FAST = {"ensemble": {"members": 3}}


def system(p):
    """A mixed problem with a known optimum: threads 12, policy lifo, timeout 0.1 s, weight 0.3, depth 5."""
    assert isinstance(p["threads"], int) and isinstance(p["depth"], int) and isinstance(p["timeout_s"], float)
    assert p["policy"] in ("fifo", "lifo", "random")
    return -((np.log2(p["threads"]) - np.log2(12)) ** 2 + (p["policy"] != "lifo") + (np.log10(p["timeout_s"]) + 1) ** 2
             + 4 * (p["weight"] - 0.3) ** 2 + 0.1 * (p["depth"] - 5) ** 2)


def test_settings_round_trip_through_the_encoding():
    space = Space(SPACE)
    rng = np.random.default_rng(0)
    settings = space.present(space.snap(rng.random((200, space.dim))))
    again = space.present(space.accept(settings))
    for a, b in zip(settings, again):
        assert a["threads"] == b["threads"] and a["policy"] == b["policy"] and a["depth"] == b["depth"]
        assert a["timeout_s"] == pytest.approx(b["timeout_s"], rel=1e-12) and a["weight"] == pytest.approx(b["weight"])
    assert {s["threads"] for s in settings} >= {1, 64} or len({s["threads"] for s in settings}) > 20
    assert {s["policy"] for s in settings} == {"fifo", "lifo", "random"}


def test_a_log_scale_is_searched_evenly_in_log_space():
    space = Space({"lr": ne.Float(1e-4, 1.0, log=True), "n": ne.Int(1, 1000, log=True)})
    u = np.random.default_rng(1).random((4000, 2))
    settings = space.present(u)
    lr = np.log10([s["lr"] for s in settings])
    assert np.mean(lr < -2) == pytest.approx(0.5, abs=0.04)  # a linear scale would put 1% below 1e-2
    n = np.log10([s["n"] for s in settings])
    assert np.mean(n < 1.5) == pytest.approx(0.5, abs=0.05)


def test_optimize_over_a_named_space_finds_the_optimum_with_native_values():
    current = {"threads": 4, "policy": "fifo", "timeout_s": 1.0, "weight": 0.5, "depth": 3}
    result = ne.optimize(system, SPACE, budget=60, seed=0, initial=[current])
    h = result.history
    assert result.params[0] == current and h.source[0] == "enqueued"  # the warm start goes first
    assert h.threads.map(type).eq(int).all() and h.threads.between(1, 64).all() and h.depth.between(2, 9).all()
    assert set(h.policy) <= {"fifo", "lifo", "random"}
    best = result.best_params
    assert best["policy"] == "lifo" and 8 <= best["threads"] <= 18 and 3 <= best["depth"] <= 7
    assert result.best_y > -0.15 and result.best_y == pytest.approx(system(best))


def test_ask_and_tell_dicts_with_a_foreign_evaluation_and_an_exact_resume(tmp_path):
    opt = ne.Optimizer(SPACE, config=FAST, seed=2)
    opt.enqueue({"threads": 16, "policy": "lifo", "timeout_s": 0.2, "weight": 0.3, "depth": 5})
    for _ in range(4):
        P = opt.ask(3)
        assert isinstance(P, list) and isinstance(P[0], dict)
        opt.tell(P, [system(p) for p in P])
    colleague = {"threads": 12, "policy": "lifo", "timeout_s": 0.1, "weight": 0.3, "depth": 5}
    opt.tell(colleague, [system(colleague)])  # evaluated elsewhere, never asked
    h = opt.history()
    assert h.source.iloc[0] == "enqueued" and h.source.iloc[-1] == "foreign" and len(h) == 13
    assert opt.best[0]["threads"] == 12 and opt.best[1] == pytest.approx(0.0)
    opt.save(tmp_path / "c.pt")
    back = ne.Optimizer.load(tmp_path / "c.pt")
    for _ in range(3):
        P, Q = opt.ask(2), back.ask(2)
        assert P == Q
        opt.tell(P, [system(p) for p in P])
        back.tell(Q, [system(q) for q in Q])
    with pytest.raises(ValueError, match="policy='lilo'"):
        opt.tell({**colleague, "policy": "lilo"}, [0.0])


def test_a_told_point_outside_the_bounds_is_refused_and_one_inside_counts():
    opt = ne.Optimizer([(0, 1), (0, 1)], seed=0)
    with pytest.raises(ValueError, match="outside the bounds"):
        opt.tell([[0.5, 1.5]], [1.0])
    opt.tell([[0.25, 0.75]], [1.0])
    assert opt.history().source.tolist() == ["foreign"] and opt.n_evaluations == 1


@pytest.mark.parametrize("space, words", [
    ({"a": ne.Float(1.0, 1.0)}, "a: Float"),
    ({"b": ne.Categorical([])}, "b: Categorical"),
    ({"c": ne.Float(0.0, 1.0, log=True)}, "c: .*log scale needs low > 0"),
    ({"d": ne.Int(1.5, 4)}, "d: .*whole numbers"),
    ({"e": (0, 1)}, "'e'.*not a parameter"),
    ({1: ne.Float(0, 1)}, "space key 1: a parameter's name must be a non-empty string"),
    ({}, "space="),
])
def test_a_bad_space_fails_at_once_naming_the_parameter(space, words):
    with pytest.raises(ValueError, match=words):
        ne.Optimizer(space)


def test_a_space_written_as_plain_values_names_an_unknown_type():
    with pytest.raises(ValueError, match="threads: type 'integer'"):
        Space.from_dict({"threads": {"type": "integer", "low": 1, "high": 8}})
    space = Space.from_dict({"threads": {"type": "int", "low": 1, "high": 64, "log": True},
                             "policy": {"type": "categorical", "choices": ["fifo", "lifo"]}})
    assert space.dim == 3 and Space.from_dict(space.to_dict()).to_dict() == space.to_dict()


KNOBS = """
import math
def system(p):
    assert isinstance(p["threads"], int) and p["policy"] in ("fifo", "lifo", "random")
    return -((math.log2(p["threads"]) - 3.5) ** 2 + (p["policy"] != "lifo") + (math.log10(p["timeout_s"]) + 1) ** 2)
"""
SPACE_ARG = ("problem.space={threads:{type:int,low:1,high:64,log:true},policy:{type:categorical,"
             "choices:[fifo,lifo,random]},timeout_s:{type:float,low:0.01,high:10.0,log:true}}")


def _cli(tmp_path, *args):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "knobs.py").write_text(KNOBS)
    return subprocess.run([sys.executable, "-m", "nes_ensemble", "problem=callable", "problem.fn=knobs.system",
                           "tracking.enabled=false", "progress=false", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])})


@pytest.mark.slow  # (suite time)
def test_the_command_line_takes_a_named_space_and_writes_named_history(tmp_path):
    done = _cli(tmp_path, SPACE_ARG, "budget=30", f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "best setting = {'threads':" in done.stdout
    import pandas as pd

    h = pd.read_csv(tmp_path / "run" / "history.csv")
    assert list(h.columns[1:4]) == ["threads", "policy", "timeout_s"] and (h.threads == h.threads.round()).all()
    assert set(h.policy) <= {"fifo", "lifo", "random"} and h.y.max() > -1.0


def test_a_space_with_an_unknown_type_on_the_command_line_is_named(tmp_path):
    done = _cli(tmp_path, "problem.space={threads:{type:integer,low:1,high:64}}", "budget=12",
                f"hydra.run.dir={tmp_path / 'run'}")
    assert done.returncode == 2 and "threads: type 'integer'" in done.stderr and "Traceback" not in done.stderr


def test_the_journal_names_each_setting(tmp_path):
    from nes_ensemble.engine.pool import Journal

    opt = ne.Optimizer(SPACE, config=FAST, seed=0, journal=tmp_path / "j.jsonl")
    P = opt.ask(3)
    opt.tell(P, [system(p) for p in P])
    assert [r["params"] for r in Journal.read(tmp_path / "j.jsonl")] == P


def test_a_batch_asked_across_the_end_of_a_round_holds_no_setting_twice():
    """ask(n) that runs past a round plans the next round knowing the first part is pending (it once planned it
    blind, and a batch of two could hold one setting twice)."""
    space = {"lr": ne.Float(1e-4, 1e-1, log=True), "layers": ne.Int(1, 7), "opt": ne.Categorical(["adam", "sgd"])}

    def f(p):
        return -((np.log10(p["lr"]) + 2.5) ** 2) - 0.1 * (p["layers"] - 3) ** 2 - (p["opt"] != "adam")

    opt = ne.Optimizer(space, seed=0, budget=14)
    while not opt.done:
        batch = opt.ask(2)
        sources = [p.provenance.source for _, p in opt.ledger.pending]
        if "repeat" not in sources:  # (a repeat measures the noise on purpose)
            assert batch[0] != batch[1], batch
        opt.tell(batch, [f(p) for p in batch])
