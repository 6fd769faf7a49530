"""The command line's entry point (``nes-ensemble`` and ``python -m nes_ensemble``), kept free of heavy imports.

A Ctrl-C while the libraries load (torch, Hydra, pandas: a second or two) is remembered rather than
raised: a KeyboardInterrupt raised inside a library's import can be swallowed by a broad ``except``
there, and the run would then start as if never interrupted.

Once they are loaded, Ctrl-C raises KeyboardInterrupt whatever the process inherited: a process started in
the background of a script inherits SIGINT ignored, and restoring that would drop a Ctrl-C (or a ``kill
-INT``) that came before the run installs its own handler, while one that came after stopped the run.
"""

from __future__ import annotations

import signal
import sys


def main() -> None:
    """Load the app with Ctrl-C held back, then run it (or stop, if Ctrl-C came meanwhile). ``--help`` is answered
    before the libraries load: it reads the config dataclasses only."""
    if any(arg in ("--help", "-h") for arg in sys.argv[1:]):  # ours; Hydra's own help is --hydra-help
        from .app.usage import text

        print(text(), end="")
        return
    asked: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: asked.append(signum))
    try:
        from .app.main import main as run_app
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if asked:
        print("nes_ensemble: interrupted before the run started", file=sys.stderr)
        sys.exit(130)
    run_app()
