"""The examples run as their README says (slow: each is a short sweep or Tune experiment of the real model)."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).parent.parent / "examples"
pytest.importorskip("sklearn")


@pytest.mark.slow
def test_the_hydra_example_is_tuned_by_the_sweeper_its_config_names(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "hydra_app" / "train.py"), "-m", "hydra.sweeper.budget=6",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweeper.tracking.enabled=false"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    best = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert best["name"] == "nes_ensemble" and 40 < best["best_value"] < 80  # the RMSE of a sensible model
    assert set(best["best_params"]) == {"model.components", "model.alpha", "model.gamma", "model.kernel",
                                        "model.degree"}


@pytest.mark.slow
def test_the_ray_tune_example_runs_its_trials_with_nessearch(tmp_path):
    pytest.importorskip("ray.tune")
    done = subprocess.run([sys.executable, str(EXAMPLES / "ray_tune_search.py"), "--samples", "6"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**__import__("os").environ, "HOME": str(tmp_path)})  # ~/ray_results in tmp_path
    assert done.returncode == 0, done.stderr[-2000:]
    assert "best RMSE" in done.stdout
