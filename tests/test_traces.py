"""Every reference run is the same bit for bit: evaluated points, values and lineage events.

``tests/traces.py`` runs small seeded runs of every strategy and search feature, and finishes
checkpoints written by older code; their digests must equal those recorded in
``tests/reference/traces.json``, on a machine whose linear algebra gives the bits of the one they were
recorded on (a probe of small MKL / OpenBLAS results, ``traces.machine``; elsewhere the check skips,
saying so). A change that is meant to change results records new digests (``python tests/traces.py
--write``) in a commit of its own that says why.
"""

import json
import subprocess
import sys
import warnings

import pytest
from traces import CASES, LONG, REFERENCE, versions

# the libraries whose numerics a case's digest depends on
NEEDS = {name: ("torch", "numpy", "scipy") for name in [*CASES, "nes_async", "nes_v1", "cmaes_v1"]}
for name in ("es", "nes_es", "cmaes", "cmaes_v1"):
    NEEDS[name] += ("evotorch",)
NEEDS["tpe"] += ("optuna",)


def test_reference_runs_are_unchanged_bit_for_bit():
    _compare([])


@pytest.mark.slow  # the default at 100 and 300 evaluations on Hartmann-6: about a minute
def test_the_default_at_100_and_300_evaluations_is_unchanged_bit_for_bit():
    _compare(list(LONG))


def _compare(only: list[str]) -> None:
    recorded = json.loads(REFERENCE.read_text())
    have = versions()
    command = [sys.executable, str(REFERENCE.parents[1] / "traces.py"), *(["--only", ",".join(only)] if only else [])]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    traces = out["traces"]
    if recorded.get("machine") != out["machine"]:
        pytest.skip(f"the reference traces were recorded on a machine whose linear algebra gives other bits (probe "
                    f"{recorded.get('machine')}, here {out['machine']}); record them here with "
                    "python tests/traces.py --write to compare on this machine")
    wanted = {k: v for k, v in recorded["traces"].items() if (k in only if only else k not in LONG)}
    assert set(traces) == set(wanted), "every case has a recorded digest (python tests/traces.py --write)"
    compared, skipped = [], []
    for name, want in wanted.items():
        libs = NEEDS[name.split(":")[0]]
        changed = [f"{lib} {recorded['versions'][lib]} -> {have[lib]}" for lib in libs
                   if recorded["versions"][lib] != have[lib]]
        if changed or want is None or traces[name] is None:
            skipped.append(f"{name} ({', '.join(changed) or 'optional library missing'})")
            continue
        assert traces[name] == want, f"{name}: the run changed"
        compared.append(name)
    if not compared:
        pytest.skip("no reference trace recorded with these library versions: " + "; ".join(skipped))
    if skipped:
        warnings.warn("reference traces not compared: " + "; ".join(skipped))
