"""NESSampler: an Optuna study keeps its storage and swaps in nes_ensemble's search in one line."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
ROOT = Path(__file__).resolve().parents[1]

STUDY = textwrap.dedent("""
    import sys, numpy as np, optuna
    from nes_ensemble.integrations.optuna import NESSampler
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        x = trial.suggest_float("x", -5, 10)
        lr = trial.suggest_float("lr", 1e-4, 1.0, log=True)
        n = trial.suggest_int("n", 1, 32, log=True)
        c = trial.suggest_categorical("c", ["a", "b", "c"])
        assert isinstance(n, int) and c in ("a", "b", "c") and 1e-4 <= lr <= 1.0
        return (x - 2) ** 2 + (np.log10(lr) + 2) ** 2 + (np.log2(n) - 3) ** 2 + (c != "b")

    study = optuna.create_study(study_name="s", storage=sys.argv[1], load_if_exists=True, sampler=NESSampler(seed=0))
    study.optimize(objective, n_trials=30)
    print(len(study.trials), study.best_value)
""")


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_a_study_driven_by_nessampler_resumes_in_a_new_process_and_finds_the_optimum(tmp_path):
    script, storage = tmp_path / "study.py", f"sqlite:///{tmp_path}/study.db"
    script.write_text(STUDY)
    for _ in range(2):  # 30 trials, then the study is loaded from its storage in a new process for 30 more
        done = subprocess.run([sys.executable, str(script), storage], capture_output=True, text=True, timeout=300,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
        assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="s", storage=storage)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 60
    assert study.best_value < 0.05 and study.best_params["c"] == "b" and study.best_params["n"] in (7, 8, 9)
    late = [t.number for t in complete if t.value < 0.2]
    assert any(n >= 30 for n in late)  # the second process went on searching near the optimum

    import numpy as np

    import nes_ensemble as ne

    space = {"x": ne.Float(-5, 10), "lr": ne.Float(1e-4, 1.0, log=True), "n": ne.Int(1, 32, log=True),
             "c": ne.Categorical(["a", "b", "c"])}
    direct = ne.optimize(lambda p: (p["x"] - 2) ** 2 + (np.log10(p["lr"]) + 2) ** 2 + (np.log2(p["n"]) - 3) ** 2
                         + (p["c"] != "b"), space, budget=60, seed=0, direction="minimize")
    assert study.best_value <= max(5 * direct.best_y, 0.05)  # in line with ne.optimize on the same problem


def _quiet():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_a_study_resumed_by_a_new_sampler_goes_on_without_a_second_design_or_repeat():
    _quiet()
    from nes_ensemble.integrations.optuna import NESSampler

    def objective(trial):
        return (trial.suggest_float("x", 0, 1) - 0.3) ** 2 + (trial.suggest_float("y", 0, 1) - 0.6) ** 2

    study = optuna.create_study(sampler=NESSampler(seed=0))
    study.optimize(objective, n_trials=14)
    resumed = NESSampler(seed=1)  # what a new process makes of the same storage
    study.sampler = resumed
    study.optimize(objective, n_trials=13)
    sources = resumed._opt.history().source
    asked = sources[sources != "foreign"]
    assert len(asked) == 12 and not asked.isin(["initial", "repeat"]).any(), list(asked)


def test_two_samplers_sharing_a_study_do_not_repeat_each_others_settings():
    _quiet()
    from nes_ensemble.integrations.optuna import NESSampler

    study = optuna.create_study()
    a, b = NESSampler(), NESSampler()  # two processes, each with the default seed
    for i in range(30):
        study.sampler = a if i % 2 else b
        trial = study.ask()
        x, n = trial.suggest_float("x", 0, 1), trial.suggest_int("n", 1, 8)
        study.tell(trial, (x - 0.5) ** 2 + (n - 4) ** 2)
    settings = [(t.params["x"], t.params["n"]) for t in study.trials]
    assert len(set(settings)) == 30


def test_settings_that_are_always_pruned_stop_being_proposed():
    _quiet()
    from nes_ensemble.integrations.optuna import NESSampler

    def objective(trial):
        x, y = trial.suggest_float("x", 0, 1), trial.suggest_float("y", 0, 1)
        trial.report((x - 0.2) ** 2 + y, step=0)
        if x > 0.5:
            raise optuna.TrialPruned()
        return (x - 0.2) ** 2 + (y - 0.5) ** 2

    study = optuna.create_study(sampler=NESSampler(seed=0, budget=30))
    study.optimize(objective, n_trials=30)
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    assert pruned <= 9 and study.best_value < 0.01, (pruned, study.best_value)


def test_stepped_distributions_are_searched_on_their_grid():
    _quiet()
    from nes_ensemble.integrations.optuna import NESSampler

    def objective(trial):
        x = trial.suggest_float("x", 0, 10, step=0.5)
        n = trial.suggest_int("n", 0, 20, step=4)
        assert x * 2 == int(x * 2) and n % 4 == 0
        return (x - 3.5) ** 2 + (n - 12) ** 2

    study = optuna.create_study(sampler=NESSampler(seed=0, budget=30), direction="minimize")
    study.optimize(objective, n_trials=30)
    assert study.best_value == 0 and study.best_params == {"x": 3.5, "n": 12}
