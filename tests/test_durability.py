"""Never lose an evaluation: kill and resume, failing objectives, interrupts, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from traces import NETWORKS  # the networks from the first round (no kernel phase)

import nes_ensemble as ne
from nes_ensemble.engine.loop import drive
from nes_ensemble.engine.pool import Journal

ROOT = Path(__file__).resolve().parents[1]
FAST = ["problem=branin", "budget=45", "seed=4", "ensemble.members=3", "ensemble.train_steps_initial=60",
        "ensemble.train_steps=10", "evolution.every=12", "progress=false"]


def _app(args, env=None, **kw):
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "nes_ensemble", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _lines(path):
    return len(Journal.read(path)) if path.exists() else 0


LOGGED = """
import os, numpy as np
def branin_logged(x):
    with open(os.environ["NES_TEST_CALLS"], "a") as f:
        f.write(" ".join(repr(float(v)) for v in x) + "\\n")
    a, b, c, r, s, t = 1, 5.1 / (4 * np.pi ** 2), 5 / np.pi, 6, 10, 1 / (8 * np.pi)
    return float(a * (x[1] - b * x[0] ** 2 + c * x[0] - r) ** 2 + s * (1 - t) * np.cos(x[0]) + s)
"""


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_killed_and_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path):
    (tmp_path / "logged.py").write_text(LOGGED)
    problem = ["problem=callable", "problem.fn=logged.branin_logged", "problem.bounds=[[-5,10],[0,15]]",
               "problem.direction=minimize"]
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    env = {"PYTHONPATH": str(tmp_path), "NES_TEST_CALLS": str(tmp_path / "ref_calls.txt")}
    fast = [a for a in FAST if not a.startswith("problem=")]
    ref = _app([*problem, *fast, f"tracking.uri={uri}", f"hydra.run.dir={ref_dir}"], env=env)
    assert ref.wait(timeout=300) == 0, ref.stderr.read()

    env["NES_TEST_CALLS"] = str(tmp_path / "calls.txt")
    rng = np.random.default_rng(0)
    proc = _app([*problem, *fast, f"tracking.uri={uri}", f"hydra.run.dir={run_dir}"], env=env)
    kills = 0
    for target in sorted(rng.integers(5, 40, size=3)):  # SIGKILL at three random points of the run
        while _lines(run_dir / "evaluations.jsonl") < target and proc.poll() is None:
            time.sleep(0.02)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            kills += 1
        proc = _app([f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'resume'}"], env=env)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert kills >= 2

    a, b = pd.read_csv(ref_dir / "history.csv"), pd.read_csv(run_dir / "history.csv")
    assert len(b) == 45
    cols = ["x0", "x1", "y", "source", "member"]
    pd.testing.assert_frame_equal(a[cols], b[cols])  # the same run as the uninterrupted one
    rows = Journal.read(run_dir / "evaluations.jsonl")
    assert [r["evaluation"] for r in rows] == list(range(45))
    pool = {tuple(r["x"]) for r in rows}
    calls = {tuple(float(v) for v in line.split()) for line in (tmp_path / "calls.txt").read_text().splitlines()}
    repeats = int((b.source == "repeat").sum())  # the default repeats the best design point once, on purpose
    assert repeats == 1 and len(pool) == 45 - repeats and calls == pool  # every point seen is in the pool

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("nes_ensemble").experiment_id])
    resumed = [r for r in runs if r.data.tags.get("run_dir") == str(run_dir)]
    assert len(resumed) == 1 and resumed[0].info.status == "FINISHED"  # the same MLflow run went on
    assert json.load(open(run_dir / "mlflow_run.json"))["run_id"] == resumed[0].info.run_id
    reference = [r for r in runs if r.data.tags.get("run_dir") == str(ref_dir)][0]
    trees = client.get_experiment_by_name("nes_ensemble-lineage").experiment_id

    def tree(run):  # the family tree's run names and states
        return sorted((r.info.run_name, r.info.status) for r in client.search_runs(
            [trees], f"tags.optimization_run = '{run.info.run_id}'", max_results=1000))

    assert tree(resumed[0]) == tree(reference) and len(tree(reference)) > 1  # went on, nothing twice


@pytest.mark.slow  # (resume itself: test_a_run_whose_checkpoint_is_damaged_resumes_from_its_journal_...)
def test_resume_extends_a_finished_run_to_a_new_budget_and_refuses_a_smaller_one(tmp_path):
    uri, run_dir = f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "run"
    fast = [a for a in FAST if not a.startswith("budget=")]
    first = _app([*fast, "budget=20", f"tracking.uri={uri}", f"hydra.run.dir={run_dir}"])
    assert first.wait(timeout=300) == 0, first.stderr.read()
    more = _app([f"resume={run_dir}", "budget=26", "ensemble.members=9", f"tracking.uri={uri}",
                 f"hydra.run.dir={tmp_path / 'r1'}"])
    assert more.wait(timeout=300) == 0, more.stderr.read()
    assert "ignored: ensemble.members=9" in more.stderr.read()
    assert [r["evaluation"] for r in Journal.read(run_dir / "evaluations.jsonl")] == list(range(26))
    assert len(pd.read_csv(run_dir / "history.csv")) == 26
    fewer = _app([f"resume={run_dir}", "budget=10", f"hydra.run.dir={tmp_path / 'r2'}"])
    assert fewer.wait(timeout=300) == 2
    err = fewer.stderr.read()
    assert "holds 26 evaluations" in err and "Traceback" not in err
    assert "budget: 26" in (run_dir / "config.yaml").read_text()


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_a_run_folder_in_use_refuses_a_second_resume_in_one_line(tmp_path):
    from nes_ensemble.app.main import RunLock

    run_dir = tmp_path / "run"
    first = _app([*FAST, "budget=12", "tracking.enabled=false", f"hydra.run.dir={run_dir}"])
    assert first.wait(timeout=300) == 0, first.stderr.read()
    with RunLock(str(run_dir)):  # as if another process were running it
        second = _app([f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'r'}"])
        assert second.wait(timeout=300) == 2
        err = second.stderr.read().strip()
    assert "is being run by process" in err and len(err.splitlines()) == 1, err
    assert len(Journal.read(run_dir / "evaluations.jsonl")) == 12


@pytest.mark.parametrize("damage", [pytest.param("truncate", marks=pytest.mark.slow),
                                    pytest.param("delete", marks=pytest.mark.slow)])
def test_a_run_whose_checkpoint_is_damaged_resumes_from_its_journal_as_if_never_stopped(damage, tmp_path):
    args = [*[a for a in FAST if not a.startswith("budget=")], "budget=24", "tracking.enabled=false"]
    ref = _app([*args, f"hydra.run.dir={tmp_path / 'ref'}"])
    assert ref.wait(timeout=300) == 0, ref.stderr.read()
    run_dir = tmp_path / "run"
    proc = _app([*args, f"hydra.run.dir={run_dir}"])
    while _lines(run_dir / "evaluations.jsonl") < 15 and proc.poll() is None:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    checkpoint = run_dir / "checkpoint.pt"
    if damage == "truncate":
        checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    else:
        checkpoint.unlink()
    back = _app([f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'r'}"])
    assert back.wait(timeout=300) == 0, back.stderr.read()
    assert "rebuilding the run from" in back.stderr.read()
    a, b = pd.read_csv(tmp_path / "ref" / "history.csv"), pd.read_csv(run_dir / "history.csv")
    cols = ["x0", "x1", "y", "source", "member"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_a_damaged_config_is_named_in_one_line(tmp_path):
    run_dir = tmp_path / "run"
    first = _app([*FAST, "budget=12", "tracking.enabled=false", f"hydra.run.dir={run_dir}"])
    assert first.wait(timeout=300) == 0, first.stderr.read()
    (run_dir / "config.yaml").write_text("problem: [unclosed\n")
    back = _app([f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'r'}"])
    assert back.wait(timeout=300) == 2
    err = back.stderr.read()
    assert "config.yaml is damaged" in err and "Traceback" not in err, err


def _long_run(uri, run_dir, evaluations):
    """A 400-evaluation run, returned once its journal holds ``evaluations`` rows."""
    proc = _app([*FAST, "budget=400", f"tracking.uri={uri}", f"hydra.run.dir={run_dir}"])
    while _lines(run_dir / "evaluations.jsonl") < evaluations:
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    return proc


@pytest.mark.slow
def test_sigint_saves_marks_the_run_killed_and_says_how_to_resume(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_dir = tmp_path / "run"
    proc = _long_run(uri, run_dir, 20)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert f"resume with: python -m nes_ensemble resume={run_dir}" in err
    n = len(pd.read_csv(run_dir / "history.csv"))
    assert n == _lines(run_dir / "evaluations.jsonl") >= 20
    opt = ne.Optimizer.load(run_dir / "checkpoint.pt")
    assert opt.n_evaluations == n

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("nes_ensemble").experiment_id])
    assert run.info.status == "KILLED"
    tree = client.search_runs([client.get_experiment_by_name("nes_ensemble-lineage").experiment_id])
    members = [r for r in tree if r.data.tags.get("kind") in ("birth", "copy")]
    assert members and all(r.info.status in ("KILLED", "FINISHED") for r in tree)
    assert any(r.info.status == "KILLED" for r in members)


def _sigint_ignored():
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_ctrl_c_raises_once_the_libraries_are_loaded_even_if_the_process_inherited_it_ignored():
    # a job a script starts in the background inherits SIGINT ignored; the command line must not hand that back
    # to the run, or a Ctrl-C before the run's own handler is dropped and the run goes on
    code = ("import signal, nes_ensemble.app.main as app\n"
            "app.main = lambda: print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
            "from nes_ensemble.cli import main\nmain()\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         preexec_fn=_sigint_ignored, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


@pytest.mark.parametrize("delay", [0.5, pytest.param(2.5, marks=pytest.mark.slow)])
def test_ctrl_c_while_the_run_starts_exits_130_without_a_traceback(delay, tmp_path):
    # started as a script's background job (SIGINT inherited ignored); a budget that keeps the run going long
    # after the signal, so a lost Ctrl-C shows as a hang
    proc = _app([*FAST, "budget=20000", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path}/r"],
                preexec_fn=_sigint_ignored)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted" in err, err


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_a_second_ctrl_c_while_the_run_closes_exits_130_with_the_resume_hint(tmp_path):
    run_dir = tmp_path / "run"
    proc = _long_run(f"sqlite:///{tmp_path}/mlflow.db", run_dir, 15)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert f"resume={run_dir}" in err
    back = ne.Optimizer.load(run_dir / "checkpoint.pt", journal=run_dir / "evaluations.jsonl")
    assert back.n_evaluations == _lines(run_dir / "evaluations.jsonl") >= 15


def test_failures_are_recorded_never_trained_on_and_counted_against_the_budget():
    p = ne.make_problem("branin")
    calls = {"n": 0}

    def flaky(x):
        calls["n"] += 1
        if calls["n"] % 7 == 0:
            raise RuntimeError("node unreachable")
        if calls["n"] % 11 == 0:
            return float("inf")
        return p(x)

    result = ne.optimize(flaky, p.bounds, budget=40, seed=0, ensemble={"members": 3})
    h = result.history
    assert len(h) == 40 and calls["n"] == 40
    failed = h[h.status == "failed"]
    assert set(failed.reason) == {"RuntimeError: node unreachable", "non-finite value"}
    assert len(failed) == 40 // 7 + 40 // 11 - 40 // 77
    assert np.isfinite(result.best_y)


def test_timeouts_and_retries():
    calls = {"n": 0}

    def slow_first(x):
        calls["n"] += 1
        if calls["n"] == 1:
            time.sleep(2)
        return float(-np.sum(x ** 2))

    result = ne.optimize(slow_first, [(-1, 1)] * 2, budget=12, seed=0, ensemble={"members": 2},
                         evaluator={"timeout": 0.2, "retries": 1})
    assert calls["n"] == 13  # the first point timed out once and was evaluated again
    assert (result.history.status == "ok").all()

    calls["n"] = 0
    result = ne.optimize(slow_first, [(-1, 1)] * 2, budget=12, seed=0, ensemble={"members": 2},
                         evaluator={"timeout": 0.2})
    assert result.history.reason.iloc[0] == "timed out after 0.2 s" and calls["n"] == 12
    assert result.history.status.iloc[0] == "failed"


def test_consecutive_failures_stop_the_run_with_everything_kept(tmp_path):
    def broken(x):
        raise ConnectionError("cluster down")

    opt = ne.Optimizer([(0, 1)] * 2, seed=0, journal=tmp_path / "j.jsonl", evaluator={"max_failures": 5})
    with pytest.raises(ne.EvaluationError, match="failed 5 times in a row.*cluster down"):
        drive(opt, lambda X: np.array([broken(x) for x in X]), 50)
    assert opt.n_evaluations == 5 and len(Journal.read(tmp_path / "j.jsonl")) == 5


def test_load_replays_the_journal_beyond_the_checkpoint(tmp_path):
    p = ne.make_problem("branin")
    cfg = {"ensemble": {"members": 3}, "search": NETWORKS}  # rounds of several points
    ref = ne.Optimizer(p.bounds, config=cfg, seed=2)
    opt = ne.Optimizer(p.bounds, config=cfg, seed=2, journal=tmp_path / "j.jsonl")
    for o in (ref, opt):
        for _ in range(3):
            X = o.ask()
            o.tell(X, p.evaluate(X))
    opt.save(tmp_path / "c.pt")
    X = opt.ask()
    for x in X[:5]:  # evaluated after the checkpoint, then the process died
        opt.tell(x[None], p.evaluate(x[None]))
    back = ne.Optimizer.load(tmp_path / "c.pt")
    assert back.n_evaluations == opt.n_evaluations
    np.testing.assert_array_equal(back.pool.x, opt.pool.x)
    np.testing.assert_array_equal(back.ask(), X[5:])  # the rest of the round is asked again


def test_load_keeps_every_journal_row_of_a_run_with_evaluations_in_flight(tmp_path):
    p = ne.make_problem("branin")
    opt = ne.Optimizer(p.bounds, config={"ensemble": {"members": 3}, "search": {"n_init": 8}}, seed=1,
                       journal=tmp_path / "j.jsonl")
    flight = list(opt.ask(4))
    for i in range(30):  # four evaluations in flight at all times, told oldest first
        x = flight.pop(0)
        opt.tell(x[None], p.evaluate(x[None]))
        if i == 9:
            opt.save(tmp_path / "c.pt")
        flight.append(opt.ask(1)[0])
    back = ne.Optimizer.load(tmp_path / "c.pt")  # the process died with four points in flight
    assert back.n_evaluations == opt.n_evaluations == 30
    assert {tuple(x) for x in back.pool.x} == {tuple(x) for x in opt.pool.x}
    np.testing.assert_array_equal(np.sort(back.pool.y), np.sort(opt.pool.y))
    X = back.ask(3)  # and it goes on
    back.tell(X, p.evaluate(X))
    assert back.n_evaluations == 33


def _evaluate_some(opt, p, n):
    for _ in range(n):
        x = opt.ask(1)
        opt.tell(x, p.evaluate(x))


def test_a_torn_journal_resumed_twice_holds_every_evaluation_exactly_once(tmp_path):
    p, journal = ne.make_problem("branin"), tmp_path / "j.jsonl"
    cfg = {"ensemble": {"members": 3}, "search": {**NETWORKS, "n_init": 8}}
    opt = ne.Optimizer(p.bounds, config=cfg, seed=3, journal=journal)
    _evaluate_some(opt, p, 12)
    opt.save(tmp_path / "c.pt")
    _evaluate_some(opt, p, 6)  # 18 on disk, the checkpoint holds 12
    text = journal.read_text()
    journal.write_text(text + text.splitlines()[-1][:37])  # a kill mid-write of row 18 leaves a fragment
    with pytest.warns(UserWarning, match="torn last line"):
        back = ne.Optimizer.load(tmp_path / "c.pt")
    assert back.n_evaluations == 18
    _evaluate_some(back, p, 5)  # 23 evaluations; the process dies again without a checkpoint
    again = ne.Optimizer.load(tmp_path / "c.pt")
    assert again.n_evaluations == 23
    np.testing.assert_array_equal(again.pool.x, back.pool.x)
    _evaluate_some(again, p, 2)
    rows = Journal.read(journal)
    assert [r["evaluation"] for r in rows] == list(range(25))
    assert len(journal.read_text().splitlines()) == 25  # nothing repeated, no fragment left in the file


def test_a_journal_cut_short_by_hand_gets_the_checkpoints_rows_back(tmp_path):
    p, journal = ne.make_problem("branin"), tmp_path / "j.jsonl"
    opt = ne.Optimizer(p.bounds, config={"ensemble": {"members": 3}}, seed=0, journal=journal)
    _evaluate_some(opt, p, 15)
    opt.save(tmp_path / "c.pt")
    journal.write_text("".join(journal.read_text().splitlines(keepends=True)[:9]))
    with pytest.warns(UserWarning, match="6 evaluations missing from it were written back"):
        back = ne.Optimizer.load(tmp_path / "c.pt")
    rows = Journal.read(journal)
    assert [r["evaluation"] for r in rows] == list(range(15))
    np.testing.assert_allclose([r["y"] for r in rows], opt.history().y)
    np.testing.assert_allclose(np.array([r["x"] for r in rows]), opt.history()[["x0", "x1"]].to_numpy())
    assert back.n_evaluations == 15


@pytest.mark.parametrize("args, words", [
    (["problem=callable", "problem.fn=math.hypot", "problem.bounds=[[1,0]]"], "low"),
    (["budget=5", "search.n_init=20"], "budget"),
    (["strategy=sgdd"], "sgdd"),
    (["problem=nosuch"], "nosuch"),
    (["evaluator.timout=3"], "timout"),
    (["evaluator.retries=-1"], "evaluator.retries"),
])
def test_bad_input_fails_before_any_evaluation_with_a_clear_message(args, words, tmp_path):
    proc = _app([*args, "tracking.enabled=false", f"hydra.run.dir={tmp_path}"])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and words in err
    assert "Traceback" not in err
    assert not (tmp_path / "evaluations.jsonl").exists() or _lines(tmp_path / "evaluations.jsonl") == 0


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_an_objective_failing_a_fifth_of_the_time_still_reaches_the_budget():
    rng = np.random.default_rng(7)
    p = ne.make_problem("hartmann6")

    def flaky(x):
        if rng.random() < 0.2:
            raise TimeoutError("storage node did not answer")
        return p(x)

    seen = []
    result = ne.optimize(flaky, p.bounds, budget=80, seed=0, ensemble={"members": 4},
                         callback=lambda opt: seen.append(opt.metrics()["failed_evaluations"]))
    failed = result.history.status == "failed"
    assert len(result.X) == 80 and 5 < failed.sum() < 30
    assert seen[-1] == failed.sum()  # the count the tracker logs as the metric failed_evaluations
    assert (result.history.reason[failed] == "TimeoutError: storage node did not answer").all()
    assert result.best_y > 1.0


def test_an_objective_that_changes_its_input_in_place_runs_to_the_budget():
    def normalising(x):
        x -= x.mean()  # changes the array it was given
        return -float(x @ x)

    result = ne.optimize(normalising, [(0, 1)] * 3, budget=14, seed=0, ensemble={"members": 3})
    assert len(result.y) == 14 and np.isfinite(result.y).all()


@pytest.mark.parametrize("bad, words", [("abc", "fn returned 'abc'"), (None, "fn returned None")])
def test_a_run_stopped_by_the_objective_hands_back_every_evaluation_before_it(bad, words):
    calls = []

    def objective(x):
        calls.append(1)
        return bad if len(calls) == 8 else float(x.sum())

    with pytest.raises(ValueError, match=words) as caught:
        ne.optimize(objective, [(0, 1)] * 2, budget=20, seed=0, ensemble={"members": 3})
    result = caught.value.result
    assert len(result.y) == 7 and np.isfinite(result.y).all() and result.best_y == result.y.max()
    assert any(".result" in note for note in caught.value.__notes__)


def test_evaluation_error_carries_the_evaluations_it_says_are_kept():
    def flaky(x):
        if x[0] > -1 and len(seen) >= 5:
            raise ConnectionError("down")
        seen.append(1)
        return float(x.sum())

    seen = []
    with pytest.raises(ne.EvaluationError) as caught:
        ne.optimize(flaky, [(0, 1)] * 2, budget=30, seed=0, evaluator={"max_failures": 3}, ensemble={"members": 3})
    assert len(caught.value.result.y) == 8 and np.isfinite(caught.value.result.y[:5]).all()


def test_tell_refuses_reasons_that_do_not_match_the_values_and_the_run_goes_on():
    opt = ne.Optimizer([(0, 1)] * 2, seed=0)
    X = opt.ask(2)
    with pytest.raises(ValueError, match="one reason per point"):
        opt.tell(X, [np.nan, np.nan], reasons=["one"])
    opt.tell(X, [np.nan, 1.0], reasons=["one", ""])
    assert list(opt.history().status) == ["failed", "ok"]


def test_tell_refuses_values_that_are_not_numbers_by_name_and_the_run_goes_on():
    opt = ne.Optimizer([(0, 1)] * 2, seed=0)
    X = opt.ask(2)
    with pytest.raises(ValueError, match=r"^tell: y=.*one number per point"):
        opt.tell(X, ["fast", "slow"])
    opt.tell(X, [0.5, 1.0])
    assert list(opt.history().y) == [0.5, 1.0]


@pytest.mark.parametrize("seed", [-1, "abc", 2**70, [1, 2], 1.7, True])
def test_a_seed_that_is_not_a_whole_number_in_range_is_refused_by_name(seed):
    with pytest.raises(ValueError, match=r"^seed="):
        ne.Optimizer([(0, 1)], seed=seed)


@pytest.mark.parametrize("call", [lambda: ne.optimize(sum, [(0, 1)], budget=True),
                                  lambda: ne.optimize(sum, [(0, 1)], budget=-3),
                                  lambda: ne.Optimizer([(0, 1)], budget=-1)])
def test_a_budget_that_is_not_a_positive_whole_number_is_refused_by_name(call):
    with pytest.raises(ValueError, match=r"^budget="):
        call()


def test_bounds_given_as_strings_are_refused():
    with pytest.raises(ValueError, match="bounds="):
        ne.Optimizer([("0", "1")])


@pytest.mark.parametrize("arg", ["budget=0", "seed=-1"])
def test_the_command_line_refuses_a_bad_budget_or_seed_in_one_line(arg, tmp_path):
    proc = _app([*FAST, arg, "tracking.enabled=false", f"hydra.run.dir={tmp_path}"])
    assert proc.wait(timeout=120) == 2
    err = proc.stderr.read()
    assert arg in err and "Traceback" not in err, err


PIDS = """
import os, time
import numpy as np
def slow_sphere(x):
    with open(os.environ["NES_TEST_PIDS"], "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(0.2)
    return -float(np.sum((np.asarray(x) - 0.3) ** 2))
"""


def _alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()  # a zombie has ended
    except FileNotFoundError:
        return False


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGTERM, marks=pytest.mark.slow),
                                 pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_a_run_on_worker_processes_stopped_by_a_signal_leaves_no_process_and_resumes_whole(sig, tmp_path):
    (tmp_path / "pids.py").write_text(PIDS)
    pids, run_dir = tmp_path / "pids.txt", tmp_path / "run"
    env = {"PYTHONPATH": str(tmp_path), "NES_TEST_PIDS": str(pids)}
    args = ["problem=callable", "problem.fn=pids.slow_sphere", "problem.bounds=[[0,1],[0,1]]",
            "evaluator=processes", "evaluator.n_workers=2", *[a for a in FAST if not a.startswith("problem=")],
            "budget=22", "tracking.enabled=false"]
    proc = _app([*args, f"hydra.run.dir={run_dir}"], env=env)
    while _lines(run_dir / "evaluations.jsonl") < 11 and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    code = proc.wait(timeout=60)
    assert code == (130 if sig == signal.SIGTERM else -signal.SIGKILL), proc.stderr.read()
    workers = {int(p) for p in pids.read_text().split()}
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in workers if _alive(p)]  # no worker outlives the run
    back = _app([f"resume={run_dir}", f"hydra.run.dir={tmp_path / 'r'}"], env=env)
    assert back.wait(timeout=300) == 0, back.stderr.read()
    assert [r["evaluation"] for r in Journal.read(run_dir / "evaluations.jsonl")] == list(range(22))
