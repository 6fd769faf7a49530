"""The package installs like a library: a wheel carries its configs, and the console script runs from any
folder without the source tree."""

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_built_wheel_installs_and_runs_from_an_empty_folder(tmp_path):
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    source = tmp_path / "source"  # a copy, so that the build's own folders stay out of the working tree
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", "outputs", "build", "mlruns", "*.db", "experiments", "tests", "docs", ".hypothesis", "*.egg-info"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)],
                           capture_output=True, text=True, timeout=600, env=env)  # (pyproject's build backend)
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("nes_ensemble-*.whl")
    # the dependencies (torch, mlflow, hydra ...) come from this interpreter's site-packages (a virtual
    # environment's or the system's: venv --system-site-packages would see the base interpreter's only), named
    # in a .pth file, whose own .pth files (an editable install of nes_ensemble) are not run; the package
    # itself comes from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python, script = venv / "bin" / "python", venv / "bin" / "nes-ensemble"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    (Path(purelib) / "_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                              str(wheel)], capture_output=True, text=True, timeout=300, env=env)  # (this pip, there)
    assert install.returncode == 0, install.stderr[-2000:]
    where = subprocess.run([str(python), "-c", "import nes_ensemble; print(nes_ensemble.__file__)"], cwd=work,
                           capture_output=True, text=True, timeout=120, env=env)
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr  # not the source tree
    run = subprocess.run([str(script), "budget=30", "progress=false", "tracking.enabled=false"], cwd=work,
                         capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "30 evaluations" in run.stdout and list((work / "outputs").glob("*/*/history.csv"))
