"""The README's Python example runs as written, and every link in the README and docs/ resolves in a clone."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.slow  # (a long run: the slow suite, which CI runs too)
def test_the_python_api_example_runs_as_written(tmp_path, monkeypatch):
    api = (ROOT / "README.md").read_text().split("\n## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", api, re.S)  # (the Ray Tune snippet: tests/test_examples.py)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)  # it saves opt.pt
    scope: dict = {}
    exec(blocks[0], scope)  # the named space
    assert scope["result"].best_params["policy"] == "lifo" and scope["result"].params[0] == scope["today"]
    assert scope["opt"].n_evaluations == 5 and scope["opt"].history().source.iloc[-1] == "foreign"
    exec("\n".join(blocks[1:]), scope)
    assert scope["result"].X.shape == (150, 4) and scope["result"].best_y < 0.05
    assert scope["opt"].n_evaluations == 4 and (tmp_path / "convergence.png").exists()


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_local_link_resolves(page):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md":
            headings = re.findall(r"^#+ (.*)$", file.read_text(), re.M)
            if anchor not in {_anchor(h) for h in headings}:
                broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"
