"""The house rules of DESIGN.md that a reader can check mechanically, read off the package's source."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nes_ensemble"
# libraries only these modules import (the app side: the command line, the Hydra sweeper, the tracker)
ONLY_APP_AND_TRACKER = {"hydra": {"nes_ensemble.app.main", "nes_ensemble.integrations.hydra_sweeper"},
                        "mlflow": {"nes_ensemble.app.tracking"}}
# the folders that show the parts, and the few modules every part shares at the top
FOLDERS = {"members", "proposers", "engine", "app", "integrations", "conf"}
TOP = {"__init__", "__main__", "cli", "config", "space", "problems", "read_cluster"}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = ast.parse(path.read_text(), str(path))
    return out


def _imports(name: str, tree: ast.Module, is_package: bool, known: set[str] = frozenset()) -> set[str]:
    """Every module ``name`` imports, anywhere in it (inside functions too), as absolute dotted names
    (``from package import module`` imports the module, not the package, when it is one of ``known``)."""
    here = name.split(".") if is_package else name.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join(base + (node.module.split(".") if node.module else []))
            submodules = {f"{module}.{a.name}" for a in node.names} & set(known)
            out |= submodules if len(submodules) == len(node.names) else {module}
    return out


def test_no_module_imports_one_that_imports_it_back():
    trees = _modules()
    graph = {}
    for name, tree in trees.items():
        is_package = (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()
        graph[name] = {m for m in _imports(name, tree, is_package, set(trees)) if m in trees and m != name}
    assert all("nes_ensemble" not in deps for deps in graph.values()), "import submodules, not the package"

    def reach(start: str) -> set[str]:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m not in seen:
                seen.add(m)
                todo += graph[m]
        return seen

    cycles = sorted(name for name in graph if name in reach(name))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_the_optimizer_stays_thin_and_no_function_is_long():
    assert len((PACKAGE / "engine" / "optimizer.py").read_text().splitlines()) <= 250
    long = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{name}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, f"functions over 60 lines: {long}"


def _public(tree: ast.Module):
    """Module-level public functions and classes, and the public methods of public classes."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            yield node.name, node
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    setter = any(isinstance(d, ast.Attribute) and d.attr == "setter" for d in
                                 getattr(item, "decorator_list", []))
                    if isinstance(item, ast.FunctionDef) and not item.name.startswith("_") and not setter:
                        yield f"{node.name}.{item.name}", item


def test_every_public_class_and_function_has_a_docstring():
    missing = [f"{name}.{what}" for name, tree in _modules().items() for what, node in _public(tree)
               if ast.get_docstring(node) is None]
    assert not missing, f"no docstring: {missing}"


def test_the_algorithm_never_imports_hydra_or_mlflow():
    wrong = []
    for name, tree in _modules().items():
        is_package = (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()
        for module in _imports(name, tree, is_package):
            for library, allowed in ONLY_APP_AND_TRACKER.items():
                if module.split(".")[0] == library and name not in allowed:
                    wrong.append(f"{name} imports {module}")
    assert not wrong, wrong


def test_the_folders_show_the_parts_and_the_algorithm_never_imports_the_app():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert folders == FOLDERS
    assert {p.stem for p in PACKAGE.glob("*.py")} == TOP
    wrong = []
    for name, tree in _modules().items():
        part = name.split(".")[1] if name.count(".") else ""
        if part not in ("members", "proposers", "engine") or name == "nes_ensemble.engine.synchronous":
            continue  # (optimize's optional MLflow tracking and progress bar are the app's, imported when asked for)
        is_package = (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()
        wrong += [f"{name} imports {m}" for m in _imports(name, tree, is_package, set(_modules()))
                  if m.startswith("nes_ensemble.app")]
    assert not wrong, wrong
