"""The command line as a user runs it: real Hydra, a real MLflow SQLite store, subprocesses."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = ["search.kernel.until=0", "search.repeat=0", "search.init_design=sobol"]  # no kernel phase
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
    (run,) = [r for r in client.search_runs([exp.experiment_id]) if "member_id" not in r.data.tags]
    assert run.info.run_name == "nes-hartmann6-k3-s3" and run.info.status == "FINISHED"
    assert run.data.params["ensemble.members"] == "3" and run.data.params["budget"] == "30"
    best = client.get_metric_history(run.info.run_id, "best_y")
    assert best[-1].step == 30 and best[-1].value == pytest.approx(history["y"].max())
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"history.csv", "convergence.png"}


@pytest.mark.slow  # (the default suite checks a misspelt key in tests/test_refusals.py)
def test_misspelt_config_key_fails_at_start_naming_it(tmp_path):
    proc = run_app(["serach.mode=original", "tracking=off"], tmp_path)
    assert proc.returncode != 0 and "serach" in proc.stderr
    proc = run_app(["search.mode=sideways", "tracking=off", *FAST], tmp_path)
    assert proc.returncode != 0 and "search.mode='sideways'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow  # (suite time)
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


@pytest.mark.slow  # (runs started at once in a fresh folder: tests/test_tracking.py)
def test_parallel_sweep_on_a_fresh_store_gives_one_mlflow_run_per_job(tmp_path):
    """Four joblib jobs, two at a time, on a store that does not exist yet (created once before the jobs)."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = run_app(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", "strategy=nes,sgd",
                    "budget=15", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("nes_ensemble").experiment_id])
    (summary,) = [r for r in runs if r.data.tags.get("kind") == "sweep_summary"]
    runs = [r for r in runs if r is not summary]
    assert sorted(r.info.run_name for r in runs) == ["nes-hartmann6-k3-s0", "nes-hartmann6-k3-s1",
                                                     "sgd-hartmann6-k3-s0", "sgd-hartmann6-k3-s1"]
    assert all(r.data.tags.get("sweep_dir") == f"{tmp_path}/sweep" and r.info.status == "FINISHED" for r in runs)
    assert re.search(r"\| hartmann6 +\| sgd +\| +15 \| +2 \|", proc.stdout)  # the summary's table, printed


def test_lineage_is_a_tree_of_nested_mlflow_runs_in_its_own_experiment(tmp_path):
    import json

    from mlflow.tracking import MlflowClient

    from nes_ensemble.app.tracking import fork_run_name, member_run_name

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_dir = tmp_path / "run"
    proc = run_app([*NETWORKS, "problem=branin", "budget=40", "evolution.every=10", "evolution.parents=2",
                    "evolution.children=2", f"tracking.uri={uri}", f"hydra.run.dir={run_dir}", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr
    events = json.loads((run_dir / "lineage.json").read_text())
    assert (run_dir / "lineage.png").stat().st_size > 1000
    client = MlflowClient(uri)
    (main,) = client.search_runs([client.get_experiment_by_name("nes_ensemble").experiment_id])  # members apart
    assert f"MLflow run {main.info.run_id}" in proc.stdout  # the end line names the run
    tree = client.search_runs([client.get_experiment_by_name("nes_ensemble-lineage").experiment_id])
    (root,) = [r for r in tree if "member_id" not in r.data.tags]
    assert root.data.tags["optimization_run"] == main.info.run_id and root.info.run_name == main.info.run_name
    assert root.info.run_id in main.data.tags["mlflow.note.content"]  # the optimization run links to its tree
    runs = {int(r.data.tags["member_id"]): r for r in tree if "member_id" in r.data.tags}
    by_run = {r.info.run_id: r for r in tree}
    merges = [e for e in events if e["event"] == "merge"]
    weights = {f: w for e in merges for f, w in zip(e["forks"], e["weights"])}
    fitness = {f: v for e in merges for f, v in zip(e["forks"], e["fork_fitness"])}
    assert merges and 0 in weights.values() and any(w > 0 for w in weights.values())
    for e in events:
        run = runs.get(e["id"])
        if e["event"] in ("birth", "replace"):
            assert run.data.tags["mlflow.parentRunId"] == root.info.run_id
            assert run.info.run_name == member_run_name(e)
        elif e["event"] == "fork" and weights.get(e["id"], 0) == 0:
            assert run is None  # a fork merged with no weight has no run; its merge records it
        elif e["event"] == "fork":  # nested under its parent member's run, named for generation and weight
            parent = by_run[run.data.tags["mlflow.parentRunId"]]
            assert int(parent.data.tags["member_id"]) == e["parent"]
            assert run.data.metrics["merge_weight"] == weights[e["id"]] > 0
            assert run.info.run_name == fork_run_name(e["id"], e["generation"], weights[e["id"]])
            assert run.data.metrics["fitness"] == pytest.approx(fitness[e["id"]])  # the fork's fitness beside it
            assert f"NES weight {weights[e['id']]:.2f}" in run.data.tags["mlflow.note.content"]
        elif e["event"] == "merge":
            detail = json.loads(run.data.tags[f"merge.generation{e['generation']}"])
            assert detail["forks"] == e["forks"] and detail["weights"] == e["weights"]
            assert run.data.metrics["fitness_after_merge"] is not None
    assert len({r.info.run_name for r in tree}) == len(tree)  # names unique within the optimization
    # the UI lists the newest first: start times make members read m0, m1, ... and a member's forks g1, g2, ...
    members = sorted((r for r in tree if r.data.tags.get("kind") == "birth"), key=lambda r: -r.info.start_time)
    assert [int(r.data.tags["member_id"]) for r in members] == sorted(int(r.data.tags["member_id"]) for r in members)
    forks = [r for r in tree if r.data.tags.get("kind") == "fork"]
    for parent in {r.data.tags["mlflow.parentRunId"] for r in forks}:
        mine = sorted((r for r in forks if r.data.tags["mlflow.parentRunId"] == parent),
                      key=lambda r: -r.info.start_time)
        assert [int(r.data.tags["generation"]) for r in mine] == sorted(int(r.data.tags["generation"]) for r in mine)
    note = main.data.tags["mlflow.note.content"]
    assert f"get-artifact?path=convergence.png&run_uuid={main.info.run_id}" in note and "lineage.png" in note
    assert main.data.metrics["log10_regret"] == pytest.approx(np.log10(max(main.data.metrics["regret"], 1e-12)))
    assert {a.path for a in client.list_artifacts(main.info.run_id)} >= {
        "history.csv", "convergence.png", "lineage.json", "lineage.png", "config.yaml", "evaluations.jsonl",
        "metrics.jsonl"}
    assert "diversity" in main.data.metrics and "surrogate_error" in main.data.metrics
    log = (run_dir / "app.log").read_text()  # the start, every round and the end line
    assert [p.name for p in run_dir.glob("*.log")] == ["app.log"]  # Hydra's own log is the same file
    assert "budget 40" in log and "40 of 40 evaluations" in log and f"MLflow run {main.info.run_id}" in log


@pytest.mark.slow  # (suite time)
def test_an_unreachable_tracking_store_never_stops_the_run(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_app(["budget=20", "tracking.uri=http://127.0.0.1:9", f"hydra.run.dir={run_dir}", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("MLflow tracking is off") == 1
    assert len(pd.read_csv(run_dir / "history.csv")) == 20


def test_help_says_what_the_app_does_and_explains_every_key():
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "nes_ensemble", "--help"], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "powered by Hydra" not in done.stdout
    out = done.stdout
    assert out.startswith("nes_ensemble: find the best settings") and "resume=RUN_DIR" in out
    assert "strategy   cmaes" in out and "problem    ackley" in out  # the groups and their options
    assert "  budget = 300" in out and "  evaluator.timeout = 0.0\n      seconds one evaluation may take" in out
    assert "  search.kernel.until = " in out and "  problem.space = None" in out


@pytest.mark.slow
def test_the_gaussian_process_members_forks_are_nested_runs_with_their_fitness(tmp_path):
    import json

    from mlflow.tracking import MlflowClient

    from nes_ensemble.app.tracking import fork_run_name

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_dir = tmp_path / "run"
    proc = run_app(["problem=branin", "budget=40", "evolution.kernel.every=8", "search.kernel.candidates=128",
                    f"tracking.uri={uri}", f"hydra.run.dir={run_dir}", *FAST], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(design 11, GP members 29)" in proc.stdout  # the end line: who proposed what
    events = [e for e in json.loads((run_dir / "lineage.json").read_text()) if e.get("kind") == "gp"]
    merges = [e for e in events if e["event"] == "merge"]
    assert len(merges) >= 2
    client = MlflowClient(uri)
    tree = client.search_runs([client.get_experiment_by_name("nes_ensemble-lineage").experiment_id])
    runs = {int(r.data.tags["member_id"]): r for r in tree if "member_id" in r.data.tags}
    (birth,) = [e for e in events if e["event"] == "birth"]
    assert runs[birth["id"]].info.run_name == f"gp{birth['id']}"
    merged = [(f, w, v, g) for e in merges
              for f, w, v, g in zip(e["forks"], e["weights"], e["fork_fitness"], e["gains"]) if w > 0]
    assert merged
    generation = {e["id"]: e["generation"] for e in events if e["event"] == "fork"}
    for fork, weight, fitness, gain in merged:
        run = runs[fork]
        assert run.data.tags["mlflow.parentRunId"] == runs[birth["id"]].info.run_id
        assert run.info.run_name == fork_run_name(fork, generation[fork], weight, "gp")
        assert run.data.metrics["fitness"] == pytest.approx(fitness) and run.data.params["kind"] == "gp"
        assert gain > 0 and run.data.metrics["gain"] == pytest.approx(gain)  # what the merge weighed it by
        assert "log density of the newest values" in run.data.tags["mlflow.note.content"]
