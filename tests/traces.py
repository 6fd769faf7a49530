"""Reference traces: small seeded runs whose every evaluated x and y and lineage event are digested.

The digests in ``tests/reference/traces.json`` were recorded by this script; ``test_traces.py`` runs
it again in a fresh process and compares, so a refactor that changes any run by one bit fails. It
also loads checkpoints written by older code (``tests/reference/checkpoints/``), finishes them and
compares with the uninterrupted run's digest.

    python tests/traces.py              # print the digests as JSON
    python tests/traces.py --write      # record them (only when a change of results is intended)
    python tests/traces.py --write --only random   # record one case, keep the others
    python tests/traces.py --only default_100,default_300   # the long cases (the slow suite checks them)

The runs are pinned to one CPU code path (see ``PINNED_ENV``), so that the digests do not depend on
which vector instructions the machine has.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "reference" / "traces.json"
CHECKPOINTS = HERE / "reference" / "checkpoints"
# one code path for torch (ATen), MKL, OpenBLAS and numpy, whatever the CPU offers beyond AVX2
PINNED_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "OPENBLAS_CORETYPE": "Haswell",
              # (numpy 2.4 calls AVX-512 X86_V4; the other names are those of earlier versions)
              "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL "
                                          "AVX512_SPR",
              "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
LIBRARIES = ("torch", "numpy", "scipy", "evotorch", "optuna")

SMALL = {"members": 4, "widths": [16, 32], "train_steps_initial": 60, "train_steps": 10}
EVOLVE = {"every": 12, "parents": 2, "children": 2, "fork_steps": 10}
ES = 4  # strategy.es_popsize
# the networks from the first round, as in 0.1 (the kernel phase, the default since 0.2, is traced by "default";
# the CMA-ES refinements, also new in 0.2, by "cma")
NETWORKS = {"init_design": "sobol", "repeat": 0, "kernel": {"until": 0}, "cma": {"enabled": False}}

# name -> (problem, dim, budget, strategy, overrides)
CASES: dict[str, tuple[str, int, int, str, dict[str, Any]]] = {
    "nes": ("ackley", 3, 48, "nes", {"ensemble": SMALL, "evolution": EVOLVE, "search": NETWORKS}),
    "sgd": ("ackley", 3, 40, "sgd", {"ensemble": SMALL, "search": NETWORKS}),
    "es": ("branin", 2, 36, "es", {"ensemble": SMALL, "strategy__es_popsize": ES, "search": NETWORKS}),
    "nes_es": ("branin", 2, 40, "nes_es", {"ensemble": SMALL, "strategy__es_popsize": ES, "evolution": EVOLVE,
                                           "search": NETWORKS}),
    "original_windows": ("branin", 2, 60, "nes", {
        "ensemble": SMALL, "evolution": EVOLVE,
        "search": {**NETWORKS, "mode": "original", "n_init": 12, "windows": True, "window_size": 10, "rotate_every": 20,
                   "original_steps": 4, "original_gaussian": 2}}),
    "regions_patience": ("branin", 2, 60, "nes", {
        "ensemble": SMALL, "evolution": EVOLVE,
        "search": {**NETWORKS, "basins": 2, "basin_share": 0.5, "region_patience": 2, "basins_until": 0.9}}),
    "restarts": ("rosenbrock", 2, 70, "sgd", {"ensemble": SMALL, "search": {**NETWORKS, "restart_patience": 2}}),
    "polish_off": ("ackley", 3, 40, "nes", {"ensemble": SMALL, "evolution": EVOLVE,
                                           "search": {**NETWORKS, "polish": False}}),
    "select_ucb_rotate": ("levy", 3, 40, "sgd", {
        "ensemble": SMALL, "search": {**NETWORKS, "select": "ucb", "assignment": "rotate", "ascent_radius": 0.2}}),
    "random": ("ackley", 3, 30, "random", {}),
    "sobol": ("ackley", 3, 30, "sobol", {}),
    "cmaes": ("ackley", 3, 30, "cmaes", {"ensemble": SMALL}),  # a small population in its v1 checkpoint
    "tpe": ("ackley", 3, 25, "tpe", {}),
    # the default: a Latin hypercube, one repeat, the kernel phase (shortened), then the networks
    "default": ("hartmann6", 6, 40, "nes", {"ensemble": SMALL, "evolution": EVOLVE, "search": {"kernel": {
        "until": 30, "candidates": 256, "ascent_steps": 20}}}),
    # the networks' refinements drawn from the CMA-ES over the rounds, which every proposal of a round is told to
    "cma": ("levy", 3, 50, "nes", {"ensemble": SMALL, "evolution": EVOLVE, "search": {**NETWORKS, "cma": {}}}),
    # the kernel phase restarted from fresh designs when its best stalls (early here: restart_from 20)
    "kernel_restart": ("branin", 2, 56, "nes", {"ensemble": SMALL, "evolution": EVOLVE, "search": {"kernel": {
        "until": 45, "candidates": 128, "ascent_steps": 10, "restart_from": 20, "restart_after": 6,
        "restart_room": 10}}}),
    # polishing steps between the kernel phase's expected-improvement proposals
    "kernel_polish": ("branin", 2, 62, "nes", {"ensemble": SMALL, "evolution": EVOLVE, "search": {"kernel": {
        "until": 60, "candidates": 128, "ascent_steps": 10}}}),
}

# the default as a user runs it (Hartmann-6, every setting at its default) at the budgets users run most: long runs,
# checked by the slow suite (python tests/traces.py --only default_100,default_300)
LONG: dict[str, tuple[str, int, int, str, dict[str, Any]]] = {
    "default_100": ("hartmann6", 6, 100, "nes", {}),
    "default_300": ("hartmann6", 6, 300, "nes", {}),
}
CASES.update(LONG)


def digest(X: Any, y: Any, events: list[dict]) -> dict[str, Any]:
    """SHA-256 digests of every evaluated x and y (float64 bytes) and of the lineage events."""
    import numpy as np

    X, y = np.ascontiguousarray(X, dtype=np.float64), np.ascontiguousarray(y, dtype=np.float64)
    text = json.dumps(events, sort_keys=True, default=lambda v: v.item() if hasattr(v, "item") else str(v))
    best = float(np.nanmax(y)) if np.isfinite(y).any() else float("nan")
    return {"evaluations": int(len(y)), "best_y": best,
            "x": hashlib.sha256(X.tobytes()).hexdigest()[:24], "y": hashlib.sha256(y.tobytes()).hexdigest()[:24],
            "events": hashlib.sha256(text.encode()).hexdigest()[:24], "n_events": len(events)}


def history_digest(opt: Any) -> dict[str, Any]:
    h = opt.history()
    return digest(h[[c for c in h.columns if c.startswith("x")]].to_numpy(), h["y"].to_numpy(), opt.events)


def objective(problem: str, dim: int) -> Callable:
    """The case's problem, with every ninth call a failed (NaN) evaluation (``f.calls[0]`` counts them)."""
    import numpy as np

    import nes_ensemble as ne

    p = ne.make_problem(problem, dim)
    calls = [0]

    def f(x: Any) -> float:
        calls[0] += 1
        return float("nan") if calls[0] % 9 == 0 else float(p.evaluate(np.asarray(x)[None])[0])

    f.bounds, f.calls = p.bounds, calls  # type: ignore[attr-defined]
    return f


def run_case(name: str) -> dict[str, Any]:
    import nes_ensemble as ne

    problem, dim, budget, strategy, overrides = CASES[name]
    f = objective(problem, dim)
    result = ne.optimize(f, f.bounds, budget=budget, seed=3, strategy=strategy, **overrides)
    return digest(result.X, result.y, result.lineage)


def run_async() -> dict[str, Any]:
    """ask / tell with three evaluations in flight, told oldest first, budget unknown, minimizing."""

    import nes_ensemble as ne

    f = objective("branin", 2)
    opt = ne.Optimizer(f.bounds, seed=1, direction="minimize", ensemble=SMALL, evolution=EVOLVE, search=NETWORKS)
    flight = list(opt.ask(3))
    for _ in range(45):
        x = flight.pop(0)
        opt.tell(x[None], [f(x)])
        flight.append(opt.ask(1)[0])
    return history_digest(opt)


# ------------------------------------------------------------------ checkpoints written by older code
FIXTURES = {  # name -> (case, round after which the checkpoint was written, evaluations told in all)
    "nes_v1": ("nes", 3, 36),
    "cmaes_v1": ("cmaes", 2, 17),
}


def drive(opt: Any, f: Callable, budget: int, save_after: int = 0, path: str = "", stop_at: int = 0) -> None:
    """Rounds of ask / tell one point at a time; optionally a checkpoint after round ``save_after`` and
    a stop (as a killed process would) once ``stop_at`` evaluations are told."""
    rounds = 0
    while opt.n_evaluations < budget:
        for x in opt.ask()[: budget - opt.n_evaluations]:
            if stop_at and opt.n_evaluations >= stop_at:
                return
            opt.tell(x[None], [f(x)])
        rounds += 1
        if rounds == save_after:
            opt.save(path)


def fixture_optimizer(case: str, journal: str | None) -> tuple[Any, Callable, int]:
    import nes_ensemble as ne

    problem, dim, budget, strategy, overrides = CASES[case]
    f = objective(problem, dim)
    opt = ne.Optimizer(f.bounds, seed=3, journal=journal, budget=budget, strategy={"name": strategy}, **overrides)
    return opt, f, budget


def make_fixture(name: str) -> None:
    """Write a checkpoint and a journal that runs past it (run once, by the code whose format they keep)."""
    case, save_after, stop_at = FIXTURES[name]
    folder = CHECKPOINTS / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    opt, f, budget = fixture_optimizer(case, str(folder / "evaluations.jsonl"))
    drive(opt, f, budget, save_after, str(folder / "checkpoint.pt"), stop_at)


def finish_fixture(name: str) -> dict[str, Any]:
    """Load a fixture's checkpoint (its journal copied aside), finish the run and digest it; the digest
    must be that of the uninterrupted run of the same case."""
    import nes_ensemble as ne

    case, _, _ = FIXTURES[name]
    _, f, budget = fixture_optimizer(case, None)
    with tempfile.TemporaryDirectory() as tmp:
        journal = os.path.join(tmp, "evaluations.jsonl")
        shutil.copy(CHECKPOINTS / name / "evaluations.jsonl", journal)
        opt = ne.Optimizer.load(CHECKPOINTS / name / "checkpoint.pt", journal=journal)
        f.calls[0] = opt.n_evaluations  # the objective's failure counter goes on where the killed run left it
        drive(opt, f, budget)
    return history_digest(opt)


def uninterrupted(name: str) -> dict[str, Any]:
    case, _, _ = FIXTURES[name]
    opt, f, budget = fixture_optimizer(case, None)
    drive(opt, f, budget)
    return history_digest(opt)


def versions() -> dict[str, str]:
    out = {}
    for lib in LIBRARIES:
        try:
            out[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            out[lib] = ""
    return out


def machine() -> str:
    """A digest of small linear-algebra results (torch's MKL and LAPACK, numpy's and scipy's OpenBLAS) in the pinned
    environment. Machines of one kind can still differ here (MKL takes other paths on other CPUs, whatever
    ``MKL_CBWR`` says), and where these bits differ the runs' bits do: traces compare only on a machine whose
    probe matches the one they were recorded on."""
    import numpy as np
    import scipy.linalg
    import torch

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    h = hashlib.sha256()
    for n in (2, 3, 6, 10, 17, 33, 64, 100):
        a = torch.randn(n, n, generator=g, dtype=torch.float64)
        s = a @ a.T + n * torch.eye(n, dtype=torch.float64)
        a32, s32 = a.float(), s.float()
        for t in (s, torch.linalg.cholesky(s), torch.linalg.eigh(s)[0], torch.linalg.solve(s, a), a32 @ a32.T,
                  torch.linalg.eigh(s32)[0], torch.linalg.cholesky(s32), torch.tanh(a32), torch.exp(a),
                  torch.nn.functional.linear(torch.randn(50, n, generator=g), a32)):
            h.update(t.numpy().tobytes())
        h.update(np.matmul(a.numpy(), a.numpy().T).tobytes())
        h.update(scipy.linalg.cholesky(s.numpy()).tobytes())
    return h.hexdigest()[:16]


def collect(names: list[str] | None = None) -> dict[str, Any]:
    """Every case's digest (``None`` for a case whose optional library is missing)."""
    import torch

    torch.set_num_threads(1)
    have = versions()
    out: dict[str, Any] = {}
    short = [c for c in CASES if c not in LONG]
    for name in names or short + ["nes_async"] + [f"{n}:uninterrupted" for n in FIXTURES] + list(FIXTURES):
        if name == "tpe" and not have["optuna"]:
            out[name] = None
        elif name == "nes_async":
            out[name] = run_async()
        elif name.endswith(":uninterrupted"):
            out[name] = uninterrupted(name.split(":")[0])
        elif name in FIXTURES:
            out[name] = finish_fixture(name)
        else:
            out[name] = run_case(name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="record the digests in tests/reference/traces.json")
    parser.add_argument("--make-fixtures", action="store_true", help="write the checkpoint fixtures (old code only)")
    parser.add_argument("--only", default="", help="comma-separated case names")
    args = parser.parse_args()
    if any(os.environ.get(k) != v for k, v in PINNED_ENV.items()):  # pin the CPU code path, then run again
        os.execvpe(sys.executable, [sys.executable, *sys.argv], {**os.environ, **PINNED_ENV})
    if args.make_fixtures:
        for name in FIXTURES:
            make_fixture(name)
    traces = collect(args.only.split(",") if args.only else None)
    record = {"versions": versions(), "machine": machine(), "traces": traces}
    before = json.loads(REFERENCE.read_text()) if REFERENCE.exists() else {"traces": {}}
    kept = before["traces"] if before.get("machine") == record["machine"] else {}  # another machine's are void
    if args.write and not kept and before["traces"]:
        print(f"traces: recorded on a machine with probe {before.get('machine')}, this one's is {record['machine']}: "
              "the cases not run now are dropped", file=sys.stderr)
    if args.write and args.only:  # record these cases, keep the others
        record["traces"] = {**kept, **traces}
    elif args.write:  # every short case; the long ones as recorded
        record["traces"] = {**{k: v for k, v in kept.items() if k in LONG}, **traces}
    if args.write:
        REFERENCE.parent.mkdir(parents=True, exist_ok=True)
        REFERENCE.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    print(json.dumps(record, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
