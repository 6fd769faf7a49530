"""Bridges to other tools' interfaces (``nes_ensemble.integrations.optuna.NESSampler``)."""
