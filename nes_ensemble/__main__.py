"""``python -m nes_ensemble``: the Hydra application."""

from .app import main

main()
