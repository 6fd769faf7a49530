"""The run machinery: the ``optimizer`` (ask / tell over the ``ledger``, its ``pool`` and journal), the
``loop`` that spends a budget, the ``evaluators`` and ``remote`` workers that run the objective,
``synchronous`` (``optimize``), ``checkpoint`` and ``resume``, and the ``recommendation`` of a run."""
