"""ModelFleet monitor: per-model windows, drift and anomaly detection, alerts, rollout analysis,
the inference lake and the ops dashboard."""

__version__ = "0.1.0"
