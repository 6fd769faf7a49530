"""The app side: the Hydra command line (``main``), its ``--help`` (``usage``), MLflow ``tracking``,
the sweep summary (``sweep``), plots (``plots``, ``visualization``) and the progress bar (``progress``).
Nothing in the algorithm imports these but ``optimize``'s optional tracking and progress."""
