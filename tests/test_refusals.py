"""Bad input and objectives that misbehave: refused at once in a line naming the value, or stopped with
everything evaluated kept; never a traceback wall, a silent exit 0 or wasted evaluations."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nes_ensemble as ne

ROOT = Path(__file__).resolve().parents[1]
RANDOM = {"strategy": "random", "search": {"n_init": 4}}


def _cli(args, tmp_path, **kw):
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}, "PYTHONPATH": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "nes_ensemble", "progress=false", "tracking.enabled=false", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kw)


def test_sys_exit_in_the_objective_stops_the_run_with_its_result():
    calls = []

    def fn(x):
        calls.append(x)
        if len(calls) == 3:
            sys.exit(0)
        return float(np.sum(x))

    with pytest.raises(ne.EvaluationError, match=r"called sys.exit\(0\)") as info:
        ne.optimize(fn, [(0, 1)] * 2, budget=10, **RANDOM)
    assert info.value.result.y.shape == (2,) and len(calls) == 3


def test_sys_exit_in_the_objective_on_the_command_line_exits_non_zero_with_the_resume_command(tmp_path):
    (tmp_path / "quitter.py").write_text("import sys\nn = [0]\ndef f(x):\n    n[0] += 1\n"
                                         "    if n[0] == 3:\n        sys.exit(0)\n    return float(sum(x))\n")
    run_dir = tmp_path / "run"
    proc = _cli(["problem=callable", "problem.fn=quitter.f", "problem.bounds=[[0,1],[0,1]]", "strategy=random",
                 "budget=20", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "sys.exit(0)" in proc.stderr and f"resume={run_dir}" in proc.stderr and "Traceback" not in proc.stderr
    assert (run_dir / "history.csv").exists()


def test_a_run_whose_every_evaluation_failed_says_so_and_exits_non_zero(tmp_path):
    (tmp_path / "broken.py").write_text("def f(x):\n    raise RuntimeError('sensor offline')\n")
    run_dir = tmp_path / "run"
    proc = _cli(["problem=callable", "problem.fn=broken.f", "problem.bounds=[[0,1]]", "strategy=random", "budget=5",
                 f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert "no evaluation succeeded (5 failed; last: RuntimeError: sensor offline)" in proc.stderr
    assert "Traceback" not in proc.stderr and (run_dir / "summary.json").exists()


def test_a_non_callable_objective_is_refused_before_any_evaluation():
    with pytest.raises(TypeError, match="fn=5 is not callable"):
        ne.optimize(5, [(0, 1)], budget=5)


def test_keyboard_interrupt_raised_by_an_objective_on_a_worker_is_one_failed_evaluation(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(
        "import numpy as np, nes_ensemble as ne\n"
        "def f(x):\n    if x[0] > 0.5:\n        raise KeyboardInterrupt\n    return float(x[0])\n"
        "if __name__ == '__main__':\n"
        "    r = ne.optimize(f, [(0, 1)], budget=8, strategy='random', evaluator='processes', n_workers=2,\n"
        "                    evaluator__max_failures=0, search={'n_init': 4})\n"
        "    print('failed', int((r.history.status == 'failed').sum()), 'of', len(r.y))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "of 8" in proc.stdout and proc.stderr.count("Traceback") == 0, proc.stderr


@pytest.mark.parametrize("space, error", [
    ({"c": ne.Categorical([1.0, float("nan")])}, "c: Categorical.*NaN"),
    ({"w": ne.Float(-1e308, 1e308)}, "w: Float.*overflows"),
])
def test_a_space_that_cannot_be_searched_is_refused_naming_the_parameter(space, error):
    with pytest.raises(ValueError, match=error):
        ne.Optimizer(space)


def test_bounds_whose_width_overflows_are_refused():
    with pytest.raises(ValueError, match=r"bounds\[1\].*overflows"):
        ne.Optimizer([(0, 1), (-1e308, 1e308)])


def test_an_initial_setting_of_the_wrong_type_names_the_parameter():
    with pytest.raises(ValueError, match="w='abc': not a number"):
        ne.optimize(lambda p: 1.0, {"w": ne.Float(0, 1)}, budget=5, initial=[{"w": "abc"}])


def test_the_optimizer_takes_a_strategy_by_name_as_optimize_does():
    opt = ne.Optimizer([(0, 1)], strategy="random", evaluator="inline")
    assert opt.cfg.strategy.name == "random" and opt.ask(2).shape == (2, 1)


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KB file system of its own (tmpfs; skipped where this process may not mount one)."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(folder)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_a_full_run_folder_ends_in_one_line_and_the_run_resumes_elsewhere(small_disk, tmp_path):
    (small_disk / "pad").write_bytes(b"\0" * 250_000)
    run_dir = small_disk / "run"
    proc = _cli(["strategy=random", "budget=3000", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 4, proc.stderr
    err = proc.stderr.strip()
    assert "No space left on device" in err and f"resume={run_dir}" in err and "Traceback" not in err, err
    assert len(err.splitlines()) <= 2, err
    written = len([line for line in (run_dir / "evaluations.jsonl").read_text().splitlines() if line.endswith("}")])
    assert written > 20
    os.remove(small_disk / "pad")  # room made: the run goes on from what was written
    proc = _cli([f"resume={run_dir}", "budget=40", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert proc.returncode == 0 or "holds" in proc.stderr, proc.stderr


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_a_read_only_run_folder_ends_in_one_line(small_disk, tmp_path):
    run_dir = small_disk / "run"
    assert _cli(["strategy=random", "budget=10", f"hydra.run.dir={run_dir}"], tmp_path).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    proc = _cli([f"resume={run_dir}", "budget=20", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    err = proc.stderr.strip()
    assert proc.returncode == 4 and "Read-only file system" in err and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if "error" in line]) == 1, err
    proc = _cli(["strategy=random", "budget=10", f"hydra.run.dir={run_dir}2"], tmp_path)
    assert proc.returncode == 2 and "Read-only file system" in proc.stderr and "Traceback" not in proc.stderr


def test_a_misspelt_key_says_what_was_meant(tmp_path):
    proc = _cli(["serach.mode=original"], tmp_path)
    assert proc.returncode == 2 and "did you mean search.mode?" in proc.stderr and "Traceback" not in proc.stderr
    with pytest.raises(ValueError, match=r"did you mean ensemble.members\?"):
        ne.Optimizer([(0, 1)], ensemble={"member": 5})


@pytest.mark.parametrize("edit", [pytest.param("seed: 0", marks=pytest.mark.slow),  # (suite time)
                                  pytest.param("name: random", marks=pytest.mark.slow),
                                  pytest.param("- - 0\n    - 1", marks=pytest.mark.slow)])
def test_resume_refuses_a_config_edited_by_hand_instead_of_contradicting_it(edit, tmp_path):
    run_dir = tmp_path / "run"
    args = ["problem=callable", "problem.fn=math.fsum", "problem.bounds=[[0,1],[0,1]]", "strategy=random", "seed=0"]
    assert _cli([*args, "budget=6", f"hydra.run.dir={run_dir}"], tmp_path).returncode == 0
    config = run_dir / "config.yaml"
    new = {"seed: 0": "seed: 7", "name: random": "name: sobol", "- - 0\n    - 1": "- - 0\n    - 2"}[edit]
    assert edit in config.read_text()
    config.write_text(config.read_text().replace(edit, new, 1))
    proc = _cli([f"resume={run_dir}", "budget=8", f"hydra.run.dir={tmp_path / 'r'}"], tmp_path)
    assert proc.returncode == 2 and "was edited after the run started" in proc.stderr, proc.stderr


@pytest.mark.parametrize("store", ["missing folder", "not a database"])
def test_a_tracking_store_that_cannot_be_written_is_given_up_at_once_with_one_warning(store, tmp_path, capfd):
    import time

    path = tmp_path / "no" / "such" / "m.db" if store == "missing folder" else tmp_path / "m.db"
    if store == "not a database":
        path.write_text("these are not the tables you are looking for\n" * 100)
    start = time.perf_counter()
    result = ne.optimize(lambda x: float(x[0]), [(0, 1)], budget=6, tracking=f"sqlite:///{path}", **RANDOM)
    assert time.perf_counter() - start < 30 and result.mlflow_run is None and len(result.y) == 6
    err = capfd.readouterr().err
    assert err.count("MLflow tracking is off") == 1 and "run directory" not in err, err


def test_a_deterministic_optimum_at_a_corner_is_not_evaluated_twice():
    result = ne.optimize(lambda x: float(np.sum(x)), [(0, 1)] * 2, budget=30, seed=0)
    repeats = int((result.history.source == "repeat").sum())
    assert repeats == 1 and len(np.unique(result.X, axis=0)) == 30 - repeats  # the one deliberate repeat only
    assert result.best_y >= 1.97


@pytest.mark.parametrize("override, key", [({"ensemble": {"widths": [32, 10**7]}}, "ensemble.widths"),
                                           ({"search": {"kernel": {"members": 10**9}}}, "search.kernel.members"),
                                           ({"evolution": {"fork_steps": 10**12}}, "evolution.fork_steps")])
def test_a_size_past_what_any_machine_holds_is_refused_by_name(override, key):
    with pytest.raises(ValueError, match=rf"{key}=.*must be at most"):
        ne.Optimizer(bounds=[(0, 1)] * 2, seed=0, **override)


@pytest.mark.parametrize("kwargs, words", [
    ({"config": [("budget", 5)]}, r"config=\[\('budget', 5\)\]: give a dict"),
    ({"config": {"search": 3}}, r"search=3: search is a group of settings; give a dict of its keys \(ascent, "),
    ({"search": {"kernel": "x"}}, r"search.kernel='x': search.kernel is a group of settings"),
    ({"config": {"search": {"kernel": {"until": "abc"}}}}, r"search.kernel.until: Value 'abc'"),
])
def test_a_config_of_the_wrong_shape_names_the_key(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ne.Optimizer([(0, 1)], **kwargs)


def test_a_config_names_its_strategy_as_the_command_line_does():
    assert ne.Optimizer([(0, 1)], config={"strategy": "sgd"}).cfg.strategy.name == "sgd"
