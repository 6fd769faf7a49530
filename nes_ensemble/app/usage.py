"""``--help`` of the command line: what the app does, the config groups and their options, and a line for
every setting, read from the config dataclasses (their defaults and the comment beside each field)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import io
import os
import tokenize

from .. import config

INTRO = """\
nes_ensemble: find the best settings of an expensive, noisy system in few evaluations, with a
population of small neural surrogates (Gaussian-process members for the first evaluations).

usage:
  python -m nes_ensemble [KEY=VALUE ...]              one run (also: nes-ensemble)
  python -m nes_ensemble -m KEY=A,B [KEY=C,D ...]     a sweep: one run per combination
  python -m nes_ensemble resume=RUN_DIR [budget=N]    continue (or extend) an interrupted run
  python -m nes_ensemble --hydra-help                 Hydra's own options (launchers, run folders)

examples:
  python -m nes_ensemble problem=ackley problem.dim=20 budget=1000
  python -m nes_ensemble problem=callable problem.fn=mymodule.latency 'problem.bounds=[[0,1],[0,1]]'
  python -m nes_ensemble -m strategy=nes,sgd seed=0,1,2
  mlflow ui --backend-store-uri sqlite:///mlflow.db    the runs, their metrics and the lineage
"""


def _comments(source: str) -> dict[int, str]:
    """The comment on each line of ``source``, with comment-only lines that follow it joined on."""
    out: dict[int, str] = {}
    last = None
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            line = tok.start[0]
            if tok.line.strip().startswith("#") and last is not None and line == last[1] + 1:
                out[last[0]] += " " + text
                last = (last[0], line)
            elif not tok.line.strip().startswith("#"):
                out[line] = text
                last = (line, line)
    return out


def _fields(cls: type, comments: dict[int, str], lines: dict[str, dict[str, int]]) -> list[tuple[str, str, str]]:
    """(key, default, comment) of every setting of ``cls``, nested groups flattened to dotted keys."""
    out = []
    for f in dataclasses.fields(cls):
        factory = f.default_factory if f.default_factory is not dataclasses.MISSING else None
        if isinstance(factory, type) and dataclasses.is_dataclass(factory):
            out += [(f"{f.name}.{k}", d, c) for k, d, c in _fields(factory, comments, lines)]
            continue
        default = factory() if factory is not None else f.default
        line = next((lines[k.__name__][f.name] for k in cls.__mro__ if f.name in lines.get(k.__name__, {})), None)
        out.append((f.name, repr(default) if isinstance(default, str) else str(default), comments.get(line, "")))
    return out


def text() -> str:
    """The whole help text."""
    source = inspect.getsource(config)
    comments = _comments(source)
    lines = {node.name: {s.target.id: s.lineno for s in node.body if isinstance(s, ast.AnnAssign)}
             for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)}
    conf = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf")
    groups = [f"  {g:<11}" + " ".join(sorted(n[:-5] for n in os.listdir(os.path.join(conf, g)) if n.endswith(".yaml")))
              for g in sorted(os.listdir(conf)) if os.path.isdir(os.path.join(conf, g))]
    settings = []
    for key, default, comment in _fields(config.AppConfig, comments, lines):
        settings.append(f"  {key} = {default}" + (f"\n      {comment}" if comment else ""))
    return (INTRO + "\nconfig groups (GROUP=OPTION, e.g. strategy=sgd; +experiment=NAME adds a preset):\n"
            + "\n".join(groups) + "\n\nsettings (KEY=VALUE; the default after =):\n" + "\n".join(settings) + "\n")
