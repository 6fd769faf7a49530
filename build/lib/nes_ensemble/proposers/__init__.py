"""Proposers: what plans the points to evaluate, one kind per strategy, behind one small interface.

``base`` has the interface, ``registry`` picks a proposer by strategy name; the network proposers
(``surrogate``, ``original``) share ``network``, and ``baselines`` holds the well-known optimizers.
"""
