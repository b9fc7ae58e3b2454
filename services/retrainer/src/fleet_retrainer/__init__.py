"""ModelFleet retrainer: when and how a model is rebuilt from its recipe and real traffic, and
whether the result may replace the champion.

This package holds the retrainer's logic (policies, datasets, recipes, the evaluation gate) as
plain Python. The service around it (port 8004: consumers of ``drift.detected``,
``retrain.requested`` and ``dataset.updated``, jobs as Ray tasks, API and CLI) is not built yet,
so nothing here is reachable by users.
"""

__version__ = "0.1.0"
