"""``python -m nes_ensemble``: the Hydra application."""

from .app import main

if __name__ == "__main__":
    main()
