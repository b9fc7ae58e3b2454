"""ModelFleet retrainer: turns drift, requests, new datasets and schedules into retraining jobs,
rebuilds models by their recipes on real traffic, and lets only better candidates through."""

__version__ = "0.1.0"
