"""``python -m nes_ensemble``: the Hydra application."""

from .cli import main

if __name__ == "__main__":
    main()
