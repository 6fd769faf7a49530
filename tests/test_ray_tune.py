"""NESSearch, nes_ensemble as a Ray Tune search algorithm: the space's conversion, the searcher's calls as Tune
makes them, save / restore, and (slow) a real Tune experiment on a local Ray."""

import math

import pytest

tune = pytest.importorskip("ray.tune")

from nes_ensemble.integrations.ray_tune import NESSearch, convert_space  # noqa: E402
from nes_ensemble.space import Categorical, Float, Int  # noqa: E402

SPACE = {"x": tune.uniform(-1, 1), "n": tune.randint(0, 8), "c": tune.choice(["a", "b", "c"]),
         "model": {"lr": tune.loguniform(1e-4, 1e-1), "q": tune.quniform(0, 1, 0.25)}, "fixed": 5}


def loss(config: dict) -> float:
    return ((config["x"] - 0.3) ** 2 + 0.1 * (config["n"] - 3) ** 2 + (config["c"] != "b")
            + (math.log10(config["model"]["lr"]) + 2) ** 2 + config["model"]["q"])


def within(config: dict) -> bool:
    m = config["model"]
    return (-1 <= config["x"] <= 1 and isinstance(config["n"], int) and 0 <= config["n"] <= 7
            and config["c"] in ("a", "b", "c") and 1e-4 <= m["lr"] <= 1e-1 and m["q"] in (0, 0.25, 0.5, 0.75, 1.0))


def test_tune_domains_become_named_parameters_and_the_rest_is_refused_naming_it():
    params = {name: p for name, (p, _) in convert_space(SPACE).items()}
    assert params == {"x": Float(-1, 1), "n": Int(0, 7), "c": Categorical(["a", "b", "c"]),
                      "model/lr": Float(1e-4, 1e-1, log=True), "model/q": Int(0, 4)}
    assert convert_space({"k": tune.lograndint(1, 100)})["k"][0] == Int(1, 99, log=True)
    q = NESSearch({"w": tune.qloguniform(1e-3, 1, 1e-3)}, metric="m", mode="min", seed=0)
    assert q._params["w"][0] == Float(1e-3, 1, log=True)  # searched on its log scale, rounded for the trial
    values = [q.suggest(f"t{i}")["w"] for i in range(6)]
    assert all(1e-3 <= v <= 1 and abs(v / 1e-3 - round(v / 1e-3)) < 1e-9 for v in values), values
    for bad, said in [({"w": tune.grid_search([1, 2])}, "w: tune.grid_search"), ({"w": tune.randn(0, 1)}, "w: "),
                      ({"w": tune.uniform(2, 1)}, "w: "), ({"w": 3}, "no tune.uniform")]:
        with pytest.raises(ValueError, match=said):
            convert_space(bad)


@pytest.mark.slow  # (suite time)
def test_the_searcher_finds_the_minimum_and_a_restore_goes_on_without_repeating_a_trial(tmp_path):
    search = NESSearch(SPACE, metric="loss", mode="min", seed=0, budget=40)
    configs = {}
    for i in range(30):  # two trials under way at a time, as with max_concurrent_trials=2
        configs[i] = search.suggest(str(i))
        if i:
            search.on_trial_complete(str(i - 1), {"loss": loss(configs[i - 1])})
    assert all(map(within, configs.values()))
    path = tmp_path / "searcher.pt"
    search.save(str(path))  # trial 29 is under way
    restored = NESSearch()
    restored.restore(str(path))
    assert (restored.metric, restored.mode) == ("loss", "min")
    restored.on_trial_complete("29", {"loss": loss(configs[29])})
    for i in range(30, 40):
        configs[i] = restored.suggest(str(i))
        restored.on_trial_complete(str(i), {"loss": loss(configs[i])})
    opt = restored._opt
    assert opt.n_evaluations == 40 and opt.pool.ok.all()
    history = opt.history()
    planned = history[history["source"] != "repeat"]  # (a repeat measures the noise on purpose)
    assert not planned.duplicated(subset=["x", "n", "c", "model/lr", "model/q"]).any()
    assert min(loss(c) for c in configs.values()) < 0.1  # optimum 0 at x=0.3, n=3, c=b, lr=1e-2, q=0


def test_a_trial_that_errs_or_reports_no_number_is_a_failed_evaluation():
    search = NESSearch(SPACE, metric="loss", mode="max", seed=1)
    a, b = search.suggest("a"), search.suggest("b")
    search.on_trial_complete("a", error=True)
    search.on_trial_complete("b", {"loss": float("nan")})
    search.on_trial_complete("never suggested", {"loss": 1.0})  # ignored
    history = search._opt.history()
    assert list(history["status"]) == ["failed", "failed"] and len(a) == len(b) == 4


@pytest.mark.slow
def test_a_tune_experiment_on_a_local_ray_with_two_trials_at_a_time(tmp_path):
    ray = pytest.importorskip("ray")
    # the workers import this module for the trainable's loss
    here = str(__import__("pathlib").Path(__file__).parent)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": here}})
    try:
        def trainable(config):
            return {"loss": loss(config)}

        def experiment(search, name, samples):
            tuner = tune.Tuner(trainable, param_space=SPACE, tune_config=tune.TuneConfig(
                search_alg=search, metric="loss", mode="min", num_samples=samples, max_concurrent_trials=2,
                reuse_actors=True),
                run_config=tune.RunConfig(storage_path=str(tmp_path), name=name, verbose=0))
            return tuner.fit()

        first = experiment(NESSearch(seed=0), "first", 20)
        configs = [r.config for r in first]
        assert len(configs) == 20 and all(map(within, configs)) and all(c["fixed"] == 5 for c in configs)
        assert first.get_best_result().metrics["loss"] < 0.3
        # Tune saved the searcher in the experiment's folder; a new one restored from it goes on
        again = NESSearch()
        again.restore_from_dir(str(tmp_path / "first"))
        assert again._opt.n_evaluations == 20
        second = experiment(again, "second", 10)
        later = [r.config for r in second]
        assert len(later) == 10 and all(map(within, later))
        assert again._opt.n_evaluations == 30
        assert not [c for c in later if c in configs]  # nothing of the first experiment is run again
        assert second.get_best_result().metrics["loss"] <= first.get_best_result().metrics["loss"] + 0.05
    finally:
        ray.shutdown()
