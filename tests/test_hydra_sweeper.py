"""The Hydra sweeper (hydra/sweeper=nes_ensemble) on a tiny Hydra app, run as a user runs it: a subprocess per
sweep, the basic and the joblib launcher, a job that crashes, a sweep killed and started again, and the errors
that must stop a sweep before any job runs."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

APP = Path(__file__).parent / "sweep_app" / "app.py"
SPACE = ["lr=tag(log,interval(1e-4,1e-1))", "layers=range(1,8)", "opt=choice(adam,sgd,crash)"]


def sweep_command(folder: Path, *args: str) -> list[str]:
    tracking = [] if any(a.startswith("hydra.sweeper.tracking.") for a in args) else [
        "hydra.sweeper.tracking.enabled=false"]
    return [sys.executable, str(APP), "-m", "hydra/sweeper=nes_ensemble", f"hydra.sweep.dir={folder}",
            f"record={folder / 'jobs.jsonl'}", *tracking, *args]


def mlflow_runs(uri: str) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([client.get_experiment_by_name("nes_ensemble").experiment_id])


def run_sweep(folder: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(sweep_command(folder, *args), capture_output=True, text=True, timeout=600,
                          cwd=folder.parent)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def records(folder: Path) -> list[dict]:
    path = folder / "jobs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def job_overrides(folder: Path) -> list[dict]:
    """Each job's overrides, as Hydra saved them in the job's folder."""
    jobs = []
    for job in sorted((d for d in folder.iterdir() if d.name.isdigit()), key=lambda d: int(d.name)):
        pairs = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())
        jobs.append(dict(p.split("=", 1) for p in pairs if not p.startswith("record=")))
    return jobs


def check_in_space(jobs: list[dict]) -> None:
    for job in jobs:
        lr, layers = float(job["lr"]), job["layers"]
        assert 1e-4 <= lr <= 1e-1 and layers.isdigit() and 1 <= int(layers) <= 7 and job["opt"] in (
            "adam", "sgd", "crash"), job


@pytest.mark.slow  # (suite time; the default suite runs the sweeper up to its checks)
def test_a_sweep_runs_its_budget_within_the_space_records_a_crash_and_writes_the_best(tmp_path):
    folder, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_sweep(folder, "hydra.sweeper.budget=14", f"hydra.sweeper.tracking.uri={uri}", *SPACE)
    jobs = job_overrides(folder)
    assert len(jobs) == 14
    check_in_space(jobs)
    finished = records(folder)
    history = __import__("pandas").read_csv(folder / "nes_ensemble" / "history.csv")
    assert len(history) == 14
    crashed = [j for j in jobs if j["opt"] == "crash"]
    assert crashed, "the design never tried the crashing choice"
    assert (history["status"] == "failed").sum() == len(crashed) == 14 - len(finished)
    best = yaml.safe_load((folder / "optimization_results.yaml").read_text())
    assert best["name"] == "nes_ensemble"
    assert math.isclose(best["best_value"], min(r["value"] for r in finished))
    winner = min(finished, key=lambda r: r["value"])
    assert best["best_params"] == {"lr": winner["lr"], "layers": winner["layers"], "opt": winner["opt"]}
    rows = [line for line in (folder / "summary.md").read_text().splitlines() if line.startswith("|")]
    assert int(rows[2].split("|")[1]) == winner["job"]  # the summary's first row: the best job
    (run,) = mlflow_runs(uri)  # the sweep is one optimization run, its jobs the evaluations
    assert run.info.status == "FINISHED" and run.data.tags["source"] == "hydra sweeper"
    assert run.data.metrics["evaluations"] == 14 and run.data.metrics["failed_evaluations"] == len(crashed)
    assert math.isclose(run.data.metrics["best_y"], best["best_value"])


SLOW = pytest.mark.slow  # (suite time: the default suite keeps one case of each kind)


@pytest.mark.parametrize("args,names", [
    (["lr=tag(lg,interval(1e-4,1e-1))", "layers=range(1,8)"], ["lr", "lg"]),
    pytest.param(["lr=interval(0.1,0.01)", "layers=range(1,8)"], ["lr", "low < high"], marks=SLOW),
    (["lr=interval(0.001,0.1)", "depth=range(1,8)"], ["depth", "not in the app's config"]),
    pytest.param(["lr=glob(*)"], ["lr", "glob"], marks=SLOW),
    (["+hydra.sweeper.params.lr='foo(1,2)'"], ["lr=foo(1,2)", "Unknown function 'foo'"]),
    pytest.param(["lr=interval(0.001,0.1)", "hydra.sweeper.ensemble.members=0"], ["members"], marks=SLOW),
    pytest.param(["lr=interval(0.001,0.1)", "hydra.sweeper.direction=down"], ["direction"], marks=SLOW),
    (["lr=interval(0.001,0.1)", "hydra.sweeper.budget=0"], ["budget"]),
])
def test_a_bad_space_or_setting_stops_the_sweep_before_any_job_in_one_line_naming_it(tmp_path, args, names):
    folder = tmp_path / "sweep"
    done = run_sweep(folder, "hydra.sweeper.budget=4", *args, check=False)
    assert done.returncode != 0
    said = [line for line in done.stderr.splitlines() if "nes_ensemble sweeper:" in line]
    assert len(said) == 1 and all(n in said[0] for n in names), done.stderr[-2000:]
    assert not records(folder) and not (folder / "0").exists()


@pytest.mark.slow
def test_a_sweep_on_the_joblib_launcher_runs_two_jobs_at_a_time(tmp_path):
    folder = tmp_path / "sweep"
    run_sweep(folder, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
              "hydra.sweeper.budget=12", "sleep=0.3", *SPACE)
    jobs = job_overrides(folder)
    assert len(jobs) == 12
    check_in_space(jobs)
    pids = {r["pid"] for r in records(folder)}
    assert len(pids) >= 2 and os.getpid() not in pids  # worker processes ran them
    assert (folder / "optimization_results.yaml").exists()


@pytest.mark.slow
def test_a_sweep_killed_midway_goes_on_from_its_folder_without_running_a_finished_job_again(tmp_path):
    folder, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = ("hydra.sweeper.budget=12", "hydra.sweeper.n_jobs=2", "sleep=0.4", f"hydra.sweeper.tracking.uri={uri}",
            *SPACE[:2], "opt=choice(adam,sgd)")
    proc = subprocess.Popen(sweep_command(folder, *args), cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    # jobs 0-3 told, job 4's result recorded by the sweeper (jobs/4.json, written as the job returns), job 5 running
    while not (folder / "nes_ensemble" / "jobs" / "4.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = records(folder)
    assert 5 <= len(before) < 12
    done = run_sweep(folder, *args)
    after = records(folder)
    jobs = [r["job"] for r in after]
    assert sorted(jobs) == list(range(12)), jobs  # every job finished once: none twice, none lost
    # (a job killed after its own last line but before its result was recorded would rightly run again)
    assert "read back, not run again" in done.stdout or len(before) % 2 == 0
    assert len(__import__("pandas").read_csv(folder / "nes_ensemble" / "history.csv")) == 12
    again = run_sweep(folder, *args)  # a finished sweep started again runs nothing
    assert len(records(folder)) == 12 and "12 of 12 jobs" in again.stdout
    (run,) = mlflow_runs(uri)  # the restarted sweep went on with its MLflow run
    assert run.info.status == "FINISHED" and run.data.metrics["evaluations"] == 12


class Evil:
    """Unpickling it would run ``touch``."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


@pytest.mark.slow
def test_a_sweep_folder_with_a_crafted_checkpoint_is_refused_and_a_damaged_one_rebuilt_from_the_journal(tmp_path):
    import torch

    folder, args = tmp_path / "sweep", ("hydra.sweeper.budget=5", *SPACE[:2], "opt=choice(adam,sgd)")
    run_sweep(folder, *args)
    saved = folder / "nes_ensemble" / "checkpoint.pt"
    good = saved.read_bytes()
    torch.save({"version": 1, "cfg": Evil(tmp_path / "PWNED")}, saved)
    done = run_sweep(folder, *args, check=False)
    said = [line for line in done.stderr.splitlines() if "nes_ensemble sweeper:" in line]
    assert done.returncode != 0 and len(said) == 1 and "refused" in said[0], done.stderr[-2000:]
    assert not (tmp_path / "PWNED").exists()
    saved.write_bytes(good[: len(good) // 2])  # a checkpoint cut short: the journal holds every evaluation
    done = run_sweep(folder, *args)
    assert "rebuilding from" in done.stdout and "5 of 5 jobs" in done.stdout
    assert len(records(folder)) == 5  # nothing ran again
