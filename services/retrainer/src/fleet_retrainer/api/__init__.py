"""The retrainer's HTTP API."""
