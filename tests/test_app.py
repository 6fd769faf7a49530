"""The command line as a user runs it: real Hydra, a real MLflow SQLite store, subprocesses."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST = ["ensemble.members=3", "ensemble.train_steps_initial=60", "ensemble.train_steps=10", "progress=false"]


def run_app(args, tmp_path, env=None):
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "nes_ensemble", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_app_runs_writes_results_and_tracks_in_mlflow(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_dir = tmp_path / "run"
    proc = run_app(["budget=30", "seed=3", f"tracking.uri={uri}", f"hydra.run.dir={run_dir}", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "nes-hartmann6-k3-s3: best" in proc.stdout and "regret" in proc.stdout
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == 30 and history["y"].max() == pytest.approx(history["best_y"].iloc[-1])
    assert (run_dir / "convergence.png").stat().st_size > 1000
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("nes_ensemble")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "nes-hartmann6-k3-s3" and run.info.status == "FINISHED"
    assert run.data.params["ensemble.members"] == "3" and run.data.params["budget"] == "30"
    best = client.get_metric_history(run.info.run_id, "best_y")
    assert best[-1].step == 30 and best[-1].value == pytest.approx(history["y"].max())
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"history.csv", "convergence.png"}


def test_misspelt_config_key_fails_at_start_naming_it(tmp_path):
    proc = run_app(["serach.mode=original", "tracking=off"], tmp_path)
    assert proc.returncode != 0 and "serach" in proc.stderr
    proc = run_app(["search.mode=sideways", "tracking=off", *FAST], tmp_path)
    assert proc.returncode != 0 and "search.mode='sideways'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_callable_problem_from_the_command_line(tmp_path):
    calls = tmp_path / "calls.txt"
    (tmp_path / "mysystem.py").write_text(
        "import numpy as np\n"
        "def latency(x):\n"
        f"    open({str(calls)!r}, 'a').write(' '.join(map(str, x)) + '\\n')\n"
        "    return float(np.sum((np.asarray(x) - 0.5) ** 2))\n")
    proc = run_app(["problem=callable", "problem.fn=mysystem.latency", "problem.bounds=[[0,1],[0,1],[0,2]]",
                    "problem.direction=minimize", "budget=25", "tracking=off", f"hydra.run.dir={tmp_path}/run",
                    *FAST], tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    rows = [list(map(float, line.split())) for line in calls.read_text().splitlines()]
    assert len(rows) == 25 and all(0 <= r[2] <= 2 for r in rows)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert history["y"].min() == pytest.approx(min(sum((v - 0.5) ** 2 for v in r) for r in rows))


def test_sweep_gives_one_mlflow_run_per_job(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_app(["-m", "seed=0,1", "budget=15", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep",
                    *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("nes_ensemble").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["nes-hartmann6-k3-s0", "nes-hartmann6-k3-s1"]
    assert all(r.data.tags.get("sweep_dir") == f"{tmp_path}/sweep" for r in runs)
