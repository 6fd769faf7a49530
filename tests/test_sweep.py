"""The sweep summary read back from job folders: the medians, quartiles and evaluations to target it reports."""

import json

import numpy as np
import pytest

from nes_ensemble.app import sweep


def _job(folder, strategy, seed, curve, seconds=1.0):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"strategy": strategy, "problem": "branin", "seed": seed,
                                                     "budget": 40, "seconds": seconds, "regret": curve[-1][1]}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"evaluations": n, "regret": r, "best_y": -r,
                                                              "elapsed_seconds": n / 10}) + "\n" for n, r in curve))


def test_the_summary_table_holds_medians_quartiles_and_evaluations_to_target(tmp_path):
    for seed, scale in enumerate([1.0, 2.0, 4.0]):  # regret halves every 10 evaluations from 1, 2 and 4
        _job(tmp_path / "nes" / str(seed), "nes", seed, [(n, scale * 0.5 ** (n / 10)) for n in range(10, 41, 5)])
    _job(tmp_path / "sgd" / "0", "sgd", 0, [(10, 1.0), (40, 0.5)], seconds=3.0)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{")  # a job that died while writing is skipped
    df, paths = sweep.summarize(str(tmp_path), str(tmp_path / "out"), checkpoints=[20, 40])
    nes = df[(df.strategy == "nes") & (df.evaluations == 20)].iloc[0]
    assert nes["seeds"] == 3 and nes["median regret"] == pytest.approx(2 * 0.25)
    q1, q3 = np.percentile([0.25, 0.5, 1.0], [25, 75])
    assert nes["IQR"] == f"{q1:.3g} - {q3:.3g}"
    # target 0.01 on branin: none of them gets there within 40 evaluations
    assert nes["evals to target (reached)"] == "- (0/3)"
    sgd = df[(df.strategy == "sgd") & (df.evaluations == 40)].iloc[0]
    assert sgd["median regret"] == 0.5 and sgd["median seconds"] == 3.0
    assert [p.rsplit("/", 1)[1] for p in paths] == ["summary.md", "summary.csv", "summary.png"]
    assert "| branin" in (tmp_path / "out" / "summary.md").read_text()


def test_evaluations_to_target_counts_the_seeds_that_reached_it(tmp_path):
    _job(tmp_path / "a", "nes", 0, [(10, 1.0), (20, 0.005), (30, 0.001)])
    _job(tmp_path / "b", "nes", 1, [(10, 1.0), (30, 0.008)])
    _job(tmp_path / "c", "nes", 2, [(10, 1.0), (40, 0.5)])
    with open(tmp_path / "c" / "metrics.jsonl", "a") as f:
        f.write('{"evaluations": 41, "reg')  # cut short by a kill: the line is skipped, not the job
    df = sweep.table(sweep.read_jobs(str(tmp_path)), [40])
    assert df.iloc[0]["evals to target (reached)"] == "25 (2/3)"  # median of 20 and 30


def test_a_problem_without_a_known_optimum_is_summarized_by_its_best_value(tmp_path):
    for seed, best in enumerate([3.0, 1.0, 2.0]):
        job = tmp_path / str(seed)
        job.mkdir()
        (job / "summary.json").write_text(json.dumps({"strategy": "nes", "problem": "latency", "seed": seed,
                                                      "budget": 20, "seconds": 1.0, "best_y": best}))
        (job / "metrics.jsonl").write_text(json.dumps({"evaluations": 20, "best_y": best}) + "\n")
    df = sweep.table(sweep.read_jobs(str(tmp_path)))
    assert list(df["median best"]) == [2.0] and "target" not in df and "evals to target (reached)" not in df


def test_a_folder_of_finished_jobs_is_summarized_from_the_command_line(tmp_path, capsys):
    assert sweep.main([str(tmp_path)]) == 1 and "no finished job" in capsys.readouterr().err
    _job(tmp_path / "0", "nes", 0, [(10, 1.0), (40, 0.005)])
    assert sweep.main([str(tmp_path)]) == 0
    assert "| branin" in capsys.readouterr().out and (tmp_path / "summary.png").exists()
