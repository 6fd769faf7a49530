"""Every reference run is the same bit for bit: evaluated points, values and lineage events.

``tests/traces.py`` runs small seeded runs of every strategy and search feature, and finishes
checkpoints written by older code; their digests must equal those recorded in
``tests/reference/traces.json``. A change that is meant to change results records new digests
(``python tests/traces.py --write``) in a commit of its own that says why.
"""

import json
import subprocess
import sys
import warnings

import pytest
from traces import CASES, REFERENCE, versions

# the libraries whose numerics a case's digest depends on
NEEDS = {name: ("torch", "numpy", "scipy") for name in [*CASES, "nes_async", "nes_v1", "cmaes_v1"]}
for name in ("es", "nes_es", "cmaes", "cmaes_v1"):
    NEEDS[name] += ("evotorch",)
NEEDS["tpe"] += ("optuna",)


def test_reference_runs_are_unchanged_bit_for_bit():
    recorded = json.loads(REFERENCE.read_text())
    have = versions()
    proc = subprocess.run([sys.executable, str(REFERENCE.parents[1] / "traces.py")], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    traces = json.loads(proc.stdout)["traces"]
    assert set(traces) == set(recorded["traces"]), "every case has a recorded digest (python tests/traces.py --write)"
    compared, skipped = [], []
    for name, want in recorded["traces"].items():
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
