"""``python -m nes_ensemble``: the Hydra application."""

from .app import main

if __name__ == "__main__":  # worker processes import this module too (forkserver start method)
    main()
