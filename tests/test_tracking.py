"""The MLflow writer process on its own: what it does when the optimization process dies mid-run."""

import json
import os

import pytest

from nes_ensemble.app.tracking import RUN_RECORD, serve


def _line(op: str, **payload) -> bytes:
    return (json.dumps({"op": op, **payload}) + "\n").encode()


def test_writer_keeps_what_it_was_sent_and_marks_the_runs_killed_when_the_stream_ends_early(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    births = [{"event": "birth", "id": i, "generation": 0, "evaluations": 0, "width": 32} for i in range(2)]
    r, w = os.pipe()
    os.write(w, _line("start", uri=uri, experiment="e", run_name="r", params={"a.b": 1}, tags={"t": "x"},
                      run_dir=str(tmp_path), resume=False)
             + _line("events", events=births) + _line("metrics", metrics={"best_y": 1.5}, step=7))
    os.close(w)  # the optimization process is gone, without a finish message
    serve(r)

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run_id = json.load(open(tmp_path / RUN_RECORD))["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED" and run.data.params["a.b"] == "1" and run.data.tags["t"] == "x"
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "best_y")] == [(7, 1.5)]
    tree = client.search_runs([client.get_experiment_by_name("e-lineage").experiment_id],
                              f"tags.optimization_run = '{run_id}'")
    (root,) = [r for r in tree if "member_id" not in r.data.tags]
    members = [r for r in tree if "member_id" in r.data.tags]
    assert sorted(m.data.tags["member_id"] for m in members) == ["0", "1"]
    assert {r.info.status for r in tree} == {"KILLED"}
    assert {m.data.tags["mlflow.parentRunId"] for m in members} == {root.info.run_id}


def _cli(args, cwd):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-m", "nes_ensemble", "problem=branin", "budget=10", "ensemble.members=3",
                             "progress=false", *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # (as the parallel joblib sweep in tests/test_app.py, also slow)
def test_runs_started_at_once_in_a_fresh_folder_all_land_in_the_store(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [_cli([f"tracking.uri={uri}", f"seed={i}", f"hydra.run.dir={tmp_path / f'r{i}'}"], tmp_path)
             for i in range(3)]
    for p in procs:
        assert p.wait(timeout=300) == 0
        assert "warning" not in p.stderr.read()
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("nes_ensemble").experiment_id],
                              "attributes.status = 'FINISHED'")
    dirs = sorted(r.data.tags["run_dir"] for r in runs if "run_dir" in r.data.tags)  # (not the members' runs)
    assert dirs == [str(tmp_path / f"r{i}") for i in range(3)]


@pytest.mark.slow
def test_a_read_only_store_costs_one_warning_line_and_the_run_finishes(tmp_path):
    first = _cli([f"tracking.uri=sqlite:///{tmp_path}/mlflow.db", f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    assert first.wait(timeout=300) == 0
    uri = f"'sqlite:///file:{tmp_path}/mlflow.db?mode=ro&uri=true'"  # the store opened read-only
    proc = _cli([f"tracking.uri={uri}", f"hydra.run.dir={tmp_path / 'b'}"], tmp_path)
    assert proc.wait(timeout=300) == 0
    err = proc.stderr.read().strip().splitlines()
    assert len(err) == 1 and "readonly database" in err[0] and "tracking is off" in err[0], err
    assert (tmp_path / "b" / "history.csv").exists()


def test_optimize_with_tracking_records_the_run_like_the_command_line(tmp_path):
    import numpy as np

    import nes_ensemble as ne

    def bowl(x):
        return -float(np.sum((x - 0.3) ** 2))

    def enough(opt):
        if opt.n_evaluations >= 14:
            opt.stop()

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = ne.optimize(bowl, [(0, 1)] * 2, budget=40, seed=0, callback=enough, ensemble={"members": 3},
                         tracking={"uri": uri, "experiment": "api"})

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.get_run(result.mlflow_run)
    assert run.info.status == "FINISHED" and run.info.run_name == "nes-bowl-s0"  # stopped by the callback, cleanly
    assert run.data.params["ensemble.members"] == "3" and run.data.tags["source"] == "optimize"
    best = client.get_metric_history(result.mlflow_run, "best_y")
    assert best[-1].step == len(result.y) and best[-1].value == result.best_y
    assert {a.path for a in client.list_artifacts(result.mlflow_run)} == {"history.csv", "lineage.json"}
    tree = client.search_runs([client.get_experiment_by_name("api-lineage").experiment_id])
    assert sorted(r.info.run_name for r in tree) == ["gp3", "m0", "m1", "m2", "nes-bowl-s0"]  # gp3: its GP member
    with pytest.raises(ValueError, match="unknown key 'experimnt'"):
        ne.optimize(bowl, [(0, 1)] * 2, budget=5, tracking={"experimnt": "x"})
    assert ne.optimize(bowl, [(0, 1)] * 2, budget=5, ensemble={"members": 3}).mlflow_run is None  # off by default
