"""The nes_ensemble sweeper for Hydra apps: ``python my_app.py -m hydra/sweeper=nes_ensemble ...``."""
