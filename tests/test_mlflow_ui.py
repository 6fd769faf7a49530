"""The family tree in the real MLflow UI: a tracked run, a real `mlflow server`, headless Chromium.

Needs Debian's Chromium at /usr/bin/chromium (`.ci/run` installs it) and the Python playwright
package, which drives it (never a browser download). Set NES_SCREENSHOT_DIR to keep the screenshot.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
EXPAND = 'button[data-component-id*="runnamecellrenderer"]'

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM) or shutil.which("mlflow") is None,
                                reason="needs Debian's chromium at /usr/bin/chromium (apt install chromium) "
                                       "and the mlflow command")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tracked_run(tmp_path):
    """A small run whose evolution replaces members (a copy nested under its source) and forks the copies."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    networks = ["search.kernel.until=0", "search.repeat=0", "search.init_design=sobol"]  # no kernel phase
    args = [*networks, "problem=branin", "budget=60", "seed=1", "evolution.every=10", "evolution.replace_factor=1.01",
            "evolution.parents=2", "evolution.children=2", "ensemble.members=4", "ensemble.activations=[tanh]",
            "ensemble.train_steps_initial=60", "ensemble.train_steps=10", "progress=false",
            f"tracking.uri={uri}", f"hydra.run.dir={tmp_path}/run"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "nes_ensemble", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return uri


@pytest.fixture
def server(tracked_run, tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(["mlflow", "server", "--backend-store-uri", tracked_run, "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=1)
                break
            except OSError:
                assert proc.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _api(url: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(f"{url}/api/2.0/mlflow/{path}", data=json.dumps(body).encode() if body else None,
                                 headers={"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=30))


def test_fork_of_a_fork_appears_under_its_parent_in_the_mlflow_ui(server, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    (exp,) = [e for e in _api(server, "experiments/search", {"max_results": 10})["experiments"]
              if e["name"] == "nes_ensemble"]
    runs = _api(server, "runs/search", {"experiment_ids": [exp["experiment_id"]], "max_results": 500})["runs"]
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    name = {rid: t["mlflow.runName"] for rid, t in tags.items()}

    def chain(rid):  # run names from the optimization run down to rid, by the REST API's parentRunId tags
        out = [rid]
        while "mlflow.parentRunId" in tags[out[-1]]:
            out.append(tags[out[-1]]["mlflow.parentRunId"])
        return [name[r] for r in reversed(out)]

    deep = sorted((chain(rid) for rid in tags), key=len)[-1]
    assert len(deep) >= 4, deep  # optimization -> member -> its copy -> a fork of the copy
    parent, child = deep[-2], deep[-1]

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(f"{server}/#/experiments/{exp['experiment_id']}/runs")
        page.get_by_text(deep[0]).first.wait_for(timeout=60000)
        expanded: set[str] = set()
        for _ in range(len(deep) + 2):  # expand every parent row, level by level
            rows = page.locator(f'div[role="row"]:has({EXPAND})')
            todo = [rows.nth(i) for i in range(rows.count())
                    if rows.nth(i).locator("a span").first.inner_text() not in expanded]
            if not todo:
                break
            for row in todo:
                expanded.add(row.locator("a span").first.inner_text())
                row.locator(EXPAND).first.click()
                page.wait_for_timeout(300)
        page.get_by_text(child, exact=True).first.wait_for(timeout=30000)
        rows = page.locator('div[role="row"][row-index]:has(a span)')
        visual = {}
        for i in range(rows.count()):
            row = rows.nth(i)
            label = row.locator("a span").first
            visual[label.inner_text()] = (int(row.get_attribute("row-index")), label.bounding_box()["x"])
        shot_dir = Path(os.environ.get("NES_SCREENSHOT_DIR", tmp_path))
        shot_dir.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot_dir / "mlflow_lineage.png"))
        browser.close()
    assert (shot_dir / "mlflow_lineage.png").stat().st_size > 10000
    # every run of the chain is shown, each below and indented further than the one it is nested under
    for upper, lower in zip(deep, deep[1:]):
        assert visual[upper][0] < visual[lower][0], (upper, lower)
        assert visual[lower][1] > visual[upper][1], (upper, lower)
    assert child in visual and parent in visual
