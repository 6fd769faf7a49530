"""What a new user meets in the first hour: habits from Optuna and Nevergrad work, the command line is quick and
tidy, and the plots of a result are one call away."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import nes_ensemble as ne

ROOT = Path(__file__).resolve().parents[1]


def _cli(args, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "-m", "nes_ensemble", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_done_says_when_the_budget_is_spent_and_ask_goes_on_after_it():
    opt = ne.Optimizer([(0, 1)], budget=4, strategy="random", search={"n_init": 2})
    while not opt.done:
        X = opt.ask(1)
        opt.tell(X, [float(X[0, 0])])
    assert opt.n_evaluations == 4 and opt.ask(2).shape == (2, 1)  # a run may go on past its budget
    assert not ne.Optimizer([(0, 1)]).done  # without a budget, never


def test_a_told_setting_is_reported_as_told():
    space = {"timeout_s": ne.Float(0.01, 10.0, log=True), "weight": ne.Float(0.0, 1.0), "n": ne.Int(1, 64, log=True)}
    opt = ne.Optimizer(space, strategy="random")
    colleague = {"timeout_s": 0.5, "weight": 0.3, "n": 12}
    opt.tell(colleague, [1.0])
    assert opt.best == (colleague, 1.0)
    assert opt.history().loc[0, "timeout_s"] == 0.5


def test_help_answers_before_the_libraries_load(tmp_path):
    start = time.perf_counter()
    proc = _cli(["--help"], tmp_path)
    assert proc.returncode == 0 and "settings" in proc.stdout
    assert time.perf_counter() - start < 3.0  # torch, Hydra and MLflow alone take longer than this to import


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_a_refused_start_and_a_resume_leave_no_empty_run_folder(tmp_path):
    assert _cli(["problem=branin", "problem.bounds=[[1,0]]", "tracking=off"], tmp_path).returncode == 2
    run = _cli(["strategy=random", "budget=6", "tracking=off", "progress=false", "hydra.run.dir=run"], tmp_path)
    assert run.returncode == 0, run.stderr
    more = _cli([f"resume={tmp_path / 'run'}", "budget=8", "progress=false"], tmp_path)
    assert more.returncode == 0, more.stderr
    assert not (tmp_path / "outputs").exists()  # Hydra's folders of the refused start and of the resume are gone


def test_a_setting_that_does_not_apply_to_the_problem_is_refused(tmp_path):
    proc = _cli(["problem.bounds=[[1,0]]", "tracking=off"], tmp_path)
    assert proc.returncode == 2 and "problem.bounds does not apply to problem=hartmann6" in proc.stderr


def test_progress_outside_a_terminal_is_a_line_every_tenth_of_the_budget(tmp_path):
    proc = _cli(["strategy=random", "budget=100", "tracking=off", "search.n_init=5", "hydra.run.dir=run"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "evaluations, best" in line]
    assert 5 <= len(lines) <= 11 and lines[-1].startswith("random-hartmann6-s0: 100/100 evaluations"), proc.stderr


def test_the_extras_hint_names_the_package(monkeypatch):
    from nes_ensemble.proposers import baselines

    monkeypatch.setitem(baselines.OPTIONAL, "gp", "botorch_not_installed_here")
    with pytest.raises(ValueError, match=r'pip install "nes_ensemble\[baselines\]"'):
        baselines.require("gp")


def test_plots_of_results_are_one_call_each(tmp_path):
    def f(x):
        return float(np.sum((x - 0.3) ** 2))

    small = {"ensemble": {"members": 3, "train_steps_initial": 30, "train_steps": 5}, "evolution": {"every": 8},
             "search": {"kernel": {"until": 0}}}
    runs = [ne.optimize(f, [(0, 1)] * 2, budget=24, seed=s, direction="minimize", **small) for s in range(2)]
    for name, fig in {"convergence": ne.plot_convergence(runs[0], optimum=0.0),
                      "lineage": ne.plot_lineage(runs[0]),
                      "comparison": ne.plot_comparison({"nes": runs, "first": runs[0]}, optimum=0.0)}.items():
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
    assert runs[0].direction == "minimize"
    with pytest.raises(ValueError, match="no population"):
        ne.plot_lineage(ne.optimize(f, [(0, 1)], budget=5, strategy="random"))
