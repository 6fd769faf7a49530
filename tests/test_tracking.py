"""The MLflow writer process on its own: what it does when the optimization process dies mid-run."""

import json
import os

from nes_ensemble.tracking import RUN_RECORD, serve


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
    members = client.search_runs([run.info.experiment_id], f"tags.optimization_run = '{run_id}'")
    assert sorted(m.data.tags["member_id"] for m in members) == ["0", "1"]
    assert {m.info.status for m in members} == {"KILLED"}
    assert {m.data.tags["mlflow.parentRunId"] for m in members} == {run_id}
