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

pytestmark = [pytest.mark.skipif(not os.path.exists(CHROMIUM) or shutil.which("mlflow") is None,
                                 reason="needs Debian's chromium at /usr/bin/chromium (apt install chromium) "
                                        "and the mlflow command"),
              pytest.mark.slow]  # a sweep, a server and a browser: about 80 s (CI runs the slow suite too)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """A sweep of NES and SGD ensembles over two seeds, whose evolution replaces members with copies and merges
    forks into them; it ends with the sweep's summary run."""
    tmp_path = tmp_path_factory.mktemp("sweep")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    networks = ["search.kernel.until=0", "search.repeat=0", "search.init_design=sobol"]  # no kernel phase
    args = ["-m", "strategy=nes,sgd", "seed=1,2", *networks, "problem=branin", "budget=60", "evolution.every=10",
            "evolution.replace_factor=1.01", "evolution.parents=2", "evolution.children=3", "ensemble.members=4",
            "ensemble.activations=[tanh]", "ensemble.train_steps_initial=60", "ensemble.train_steps=10",
            "progress=false", f"tracking.uri={uri}", f"hydra.sweep.dir={tmp_path}/sweep"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run([sys.executable, "-m", "nes_ensemble", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "sweep summary of 4 jobs" in proc.stdout and (tmp_path / "sweep" / "summary.png").stat().st_size > 10000
    # the default: Gaussian-process members from the start, their genes forked and merged every 8 evaluations
    proc = subprocess.run([sys.executable, "-m", "nes_ensemble", "problem=branin", "budget=40", "seed=1",
                           "evolution.kernel.every=8", "progress=false", f"tracking.uri={uri}",
                           "tracking.experiment=gp", f"hydra.run.dir={tmp_path}/gp"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return uri


@pytest.fixture(scope="module")
def server(tracked_run, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("server")
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


def _browser(p):
    return p.chromium.launch(executable_path=CHROMIUM, args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--disable-quic"])


def _experiment(url: str, name: str) -> str:
    (exp,) = [e for e in _api(url, "experiments/search", {"max_results": 10})["experiments"] if e["name"] == name]
    return exp["experiment_id"]


def _runs(url: str, experiment_id: str) -> dict[str, dict]:
    runs = _api(url, "runs/search", {"experiment_ids": [experiment_id], "max_results": 1000})["runs"]
    return {r["info"]["run_id"]: {**{t["key"]: t["value"] for t in r["data"].get("tags", [])},
                                  **{m["key"]: m["value"] for m in r["data"].get("metrics", [])}} for r in runs}


def _shot(page, tmp_path, name: str) -> Path:
    shot_dir = Path(os.environ.get("NES_SCREENSHOT_DIR", tmp_path))
    shot_dir.mkdir(parents=True, exist_ok=True)
    close = page.locator('button[aria-label="Close"]')  # the UI's assistant panel, over the right of the page
    if close.count():
        close.first.click()
        page.wait_for_timeout(500)
    page.screenshot(path=str(shot_dir / name))
    assert (shot_dir / name).stat().st_size > 10000
    return shot_dir / name


def test_the_fork_that_won_reads_whole_under_its_member_in_the_family_tree(server, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    tree = _experiment(server, "nes_ensemble-lineage")
    runs = _runs(server, tree)
    forks = {rid: t for rid, t in runs.items() if t.get("kind") == "fork"}
    won = max(forks, key=lambda rid: float(forks[rid]["merge_weight"]))  # the fork with the largest weight
    member = runs[forks[won]["mlflow.parentRunId"]]
    root = runs[member["mlflow.parentRunId"]]
    chain = [root["mlflow.runName"], member["mlflow.runName"], forks[won]["mlflow.runName"]]
    assert root["kind"] == "optimization" and member["kind"] in ("birth", "copy")
    assert f"w{float(forks[won]['merge_weight']):.2f}".replace("0.", ".").rstrip("0") in chain[2] or "w1 " in chain[2]

    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{server}/#/experiments/{tree}/runs")
        page.get_by_text(chain[0]).first.wait_for(timeout=60000)
        for name in chain[:2]:  # open the optimization's row, then the member's
            row = page.locator(f'div[role="row"]:has(a span:text-is("{name}")):has({EXPAND})').first
            row.locator(EXPAND).first.click()
            page.wait_for_timeout(500)
        label = page.locator(f'a span:text-is("{chain[2]}")').first
        label.wait_for(timeout=30000)
        rows = page.locator('div[role="row"][row-index]:has(a span)')
        visual = {}
        for i in range(rows.count()):
            row = rows.nth(i)
            text = row.locator("a span").first
            visual.setdefault(text.inner_text(), (int(row.get_attribute("row-index")), text.bounding_box()["x"],
                                                  text.evaluate("e => e.scrollWidth <= e.clientWidth")))
        _shot(page, tmp_path, "mlflow_lineage.png")
        browser.close()
    # the chain reads from the optimization down to the fork, each row below and indented further than its parent
    for upper, lower in zip(chain, chain[1:]):
        assert visual[upper][0] < visual[lower][0] and visual[lower][1] > visual[upper][1], (upper, lower)
    assert all(visual[name][2] for name in chain), visual  # shown whole: no name cut short by the column


def test_a_gaussian_process_fork_shows_its_genes_fitness_and_gain_under_its_member(server, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    tree = _experiment(server, "gp-lineage")
    runs = _runs(server, tree)
    forks = {rid: t for rid, t in runs.items() if t.get("kind") == "fork"}
    assert forks and all(t["mlflow.runName"].endswith(f"gp{t['member_id']}") for t in forks.values())
    assert len({t["mlflow.runName"].split()[0] for t in forks.values()}) >= 2  # forks of two generations or more
    won = max(forks, key=lambda rid: float(forks[rid]["gain"]))
    member = runs[forks[won]["mlflow.parentRunId"]]
    assert member["mlflow.runName"].startswith("gp") and float(forks[won]["merge_weight"]) > 0
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{server}/#/experiments/{tree}/runs/{won}")
        page.get_by_text("holdout fitness").first.wait_for(timeout=60000)  # the description, with the genes
        for text in ("warp", "gain over its parent", f"{float(forks[won]['fitness']):.4g}"):
            assert page.get_by_text(text, exact=False).count() > 0, text
        _shot(page, tmp_path, "mlflow_gp_fork.png")
        browser.close()


def test_the_sweep_ends_with_a_summary_run_and_member_runs_stay_out_of_the_experiment(server, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    exp = _experiment(server, "nes_ensemble")
    runs = _runs(server, exp)
    (summary,) = [rid for rid, t in runs.items() if t.get("kind") == "sweep_summary"]
    assert len(runs) == 5 and not any("member_id" in t for t in runs.values())  # 4 optimizations + the summary
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        page.goto(f"{server}/#/experiments/{exp}/runs")
        page.get_by_text("5 matching runs").first.wait_for(timeout=60000)
        page.goto(f"{server}/#/experiments/{exp}/runs/{summary}")
        page.get_by_text("median regret").first.wait_for(timeout=60000)  # the table, as the run's description
        more = page.get_by_text("Show more")
        if more.count():
            more.first.click()
            page.wait_for_timeout(500)
        for text in ("nes", "sgd", "branin", "evals to target"):
            assert page.get_by_text(text, exact=False).count() > 0, text
        _shot(page, tmp_path, "mlflow_sweep_summary.png")
        browser.close()
    artifacts = {a["path"] for a in _api(server, f"artifacts/list?run_id={summary}").get("files", [])}
    assert artifacts >= {"summary.md", "summary.csv", "summary.png"}


def test_one_sweep_id_selects_a_sweeps_jobs_and_summary_and_their_regret_is_charted_on_a_log_scale(server, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    from urllib.parse import quote

    exp = _experiment(server, "nes_ensemble")
    runs = _runs(server, exp)
    (ident,) = {t.get("sweep_id") for t in runs.values()}
    assert ident
    chosen = _api(server, "runs/search", {"experiment_ids": [exp], "filter": f"tags.sweep_id = '{ident}'"})["runs"]
    assert len(chosen) == 5  # the 4 jobs and the summary
    job = next(rid for rid, t in runs.items() if t.get("strategy") == "nes")
    assert float(runs[job]["log10_regret"]) < 0
    with sync_playwright() as p:
        browser = _browser(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        search = quote(f"tags.sweep_id = '{ident}'")
        page.goto(f"{server}/#/experiments/{exp}/runs?searchFilter={search}")
        page.get_by_text("5 matching runs").first.wait_for(timeout=60000)
        page.goto(f"{server}/#/experiments/{exp}/runs/{job}")
        plot = page.locator('img[src*="get-artifact?path=convergence.png"]')  # in the run's description
        plot.first.wait_for(timeout=60000)
        page.goto(f"{server}/#/experiments/{exp}/runs/{job}/model-metrics")
        page.get_by_placeholder("Search metric charts").fill("regret")
        page.get_by_text("log10_regret").first.wait_for(timeout=60000)  # the regret's chart on a log scale
        _shot(page, tmp_path, "mlflow_log10_regret.png")
        browser.close()
