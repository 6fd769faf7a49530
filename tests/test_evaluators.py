"""Parallel evaluators: local processes and Ray keep several evaluations in flight and lose none."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import nes_ensemble as ne
from nes_ensemble.engine.evaluators import MAX_REQUEUES


def sphere(x):
    return -float(np.sum((np.asarray(x) - 0.3) ** 2))


@pytest.mark.slow  # (suite time; the default suite runs processes in test_one_worker_gives_the_inline_run_exactly)
def test_processes_evaluator_runs_the_budget_and_finds_the_optimum():
    result = ne.optimize(sphere, [(0, 1)] * 3, budget=60, seed=0, evaluator="processes", n_workers=2,
                         ensemble={"members": 4})
    assert len(result.X) == 60 and (result.history.status == "ok").all()
    assert result.best_y > -0.01


def test_one_worker_gives_the_inline_run_exactly():
    inline = ne.optimize(sphere, [(0, 1)] * 2, budget=30, seed=1, ensemble={"members": 3})
    one = ne.optimize(sphere, [(0, 1)] * 2, budget=30, seed=1, ensemble={"members": 3}, evaluator="processes",
                      n_workers=1)
    np.testing.assert_array_equal(inline.X, one.X)


def _run_script(tmp_path, body: str, start_method: str = "forkserver") -> subprocess.CompletedProcess:
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(body).replace("START", start_method))
    try:
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=150)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the run with start_method={start_method} hung (killed after 150 s)")


TORCH_OBJECTIVE = """
    import numpy as np
    import torch
    import nes_ensemble as ne

    def train_step(x):  # an objective that runs torch ops big enough to use its thread pool
        a = torch.randn(300, 300)
        for _ in range(5):
            a = torch.tanh(a @ a / 300)
        return -float(np.sum((np.asarray(x) - 0.3) ** 2)) + 1e-9 * float(a.sum())

    if __name__ == "__main__":
        r = ne.optimize(train_step, [(0, 1)] * 3, budget=30, seed=0, evaluator="processes", n_workers=2,
                        evaluator__start_method="START")
        print("evaluations", len(r.y))
"""


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_an_objective_that_uses_torch_threads_does_not_hang_in_a_worker(tmp_path):
    # a worker forked from the optimizer inherits torch's OpenMP state and hangs on its first parallel
    # op (checked: with start_method=fork this test fails at the timeout); the default starts clean workers
    done = _run_script(tmp_path, TORCH_OBJECTIVE)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "evaluations 30" in done.stdout


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_a_script_without_a_main_guard_gets_an_error_that_says_so(tmp_path):
    done = _run_script(tmp_path, """
        import numpy as np
        import nes_ensemble as ne

        r = ne.optimize(lambda x: -float(np.sum(x ** 2)), [(0, 1)] * 2, budget=20, seed=0, evaluator="processes",
                        n_workers=2)
    """)
    assert done.returncode != 0
    assert 'if __name__ == "__main__":' in done.stderr


def test_a_script_read_from_standard_input_runs_on_worker_processes():
    script = textwrap.dedent("""
        import numpy as np
        import nes_ensemble as ne
        r = ne.optimize(lambda x: -float(np.sum(x ** 2)), [(0, 1)] * 2, budget=12, seed=0, evaluator="processes",
                        n_workers=2, ensemble={"members": 3})
        print("evaluations", len(r.y), (r.history.status == "ok").all())
    """)
    done = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "evaluations 12 True" in done.stdout


def test_an_objective_that_cannot_be_pickled_is_named_with_what_to_do():
    import threading

    lock = threading.Lock()

    def guarded(x):
        with lock:
            return sphere(x)

    with pytest.raises(ValueError, match="must be picklable.*evaluator=inline"):
        ne.optimize(guarded, [(0, 1)] * 2, budget=8, evaluator="processes", n_workers=2)


def _dies_once(flag):
    def f(x):
        if not os.path.exists(flag) and len(os.listdir(os.path.dirname(flag))) > 8:
            open(flag, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-evaluation
        open(os.path.join(os.path.dirname(flag), f"call-{time.monotonic_ns()}"), "w").close()
        return sphere(x)
    return f


def test_a_worker_that_dies_loses_no_evaluation(tmp_path):
    calls = tmp_path / "calls"
    calls.mkdir()
    result = ne.optimize(_dies_once(str(calls / "died")), [(0, 1)] * 2, budget=25, seed=0, evaluator="processes",
                         n_workers=2, ensemble={"members": 3})
    assert (calls / "died").exists()
    assert len(result.X) == 25 and (result.history.status == "ok").all()
    assert any(e["event"] == "worker_died" for e in result.lineage)
    repeats = (result.history.source == "repeat").sum()  # the default repeats the best design point once
    assert len(np.unique(result.X, axis=0)) == 25 - repeats  # the lost point was evaluated again, once


@pytest.mark.slow  # Ray's start-up alone is most of it
def test_ray_evaluator_completes_a_run_and_survives_a_dying_worker(tmp_path):
    ray = pytest.importorskip("ray")
    calls = tmp_path / "calls"
    calls.mkdir()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # the workers must be able to import this test module, where the objective is defined
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.path.dirname(__file__)}})
    try:
        result = ne.optimize(_dies_once(str(calls / "died")), [(0, 1)] * 2, budget=25, seed=0, evaluator="ray",
                             n_workers=2, ensemble={"members": 3})
    finally:
        ray.shutdown()
    assert (calls / "died").exists()
    assert len(result.X) == 25 and (result.history.status == "ok").all()
    assert any(e["event"] == "worker_died" for e in result.lineage)



def _slow_on_the_right(x):
    if x[0] > 0.6:
        time.sleep(30)  # hangs, as far as the run is concerned
    return sphere(x)


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_processes_enforce_the_time_limit_and_a_hanging_objective_does_not_hang_the_run():
    start = time.monotonic()
    result = ne.optimize(_slow_on_the_right, [(0, 1)] * 2, budget=16, seed=0, evaluator="processes", n_workers=2,
                         evaluator__timeout=1.5, evaluator__max_failures=0, ensemble={"members": 3})
    h = result.history
    slow = h.x0 > 0.6
    assert slow.any() and (h.status[slow] == "failed").all() and (h.status[~slow] == "ok").all()
    assert h.reason[slow].str.contains("timed out after 1.5 s").all()
    assert time.monotonic() - start < 25 + 2 * slow.sum()


def _kills_on_the_right(x):
    if x[0] > 0.7:
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.05)  # share the pool with the killer for a while
    return sphere(x)


def test_a_point_that_kills_its_worker_is_blamed_alone():
    result = ne.optimize(_kills_on_the_right, [(0, 1)] * 2, budget=20, seed=1, evaluator="processes", n_workers=3,
                         evaluator__max_failures=0, ensemble={"members": 3})
    h = result.history
    killer = h.x0 > 0.7
    assert killer.any() and (h.status[~killer] == "ok").all()  # a healthy point is never recorded as failed
    assert (h.status[killer] == "failed").all() and h.reason[killer].str.contains("worker died 4 times").all()
    deaths = [e for e in result.lineage if e["event"] == "worker_died"]
    assert all(e["x"][0] > 0.7 for e in deaths)  # only the killers' workers died
    assert MAX_REQUEUES + 1 <= len(deaths) <= (MAX_REQUEUES + 1) * killer.sum()  # (a repeat shares its count)
