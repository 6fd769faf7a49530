"""The base install stays light: importing the package and a default run load none of the optional engines."""

import subprocess
import sys

OPTIONAL = ("evotorch", "ray", "botorch", "optuna")

SCRIPT = f"""
import sys
import nes_ensemble as ne
loaded = [m for m in {OPTIONAL!r} if m in sys.modules]
ne.optimize(lambda x: -float(((x - 0.3) ** 2).sum()), [(0, 1)] * 2, budget=14, seed=0)
print(",".join(loaded), "|", ",".join(m for m in {OPTIONAL!r} if m in sys.modules))
"""


def test_import_and_a_default_run_load_no_optional_engine():
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "|", f"loaded (at import | after a run): {proc.stdout.strip()}"
