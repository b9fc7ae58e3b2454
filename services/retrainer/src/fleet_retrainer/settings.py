"""Retrainer settings (``FLEET_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

from fleet_core.settings import ServiceSettings
from fleet_retrainer.policy import RetrainPolicy


class RetrainerSettings(ServiceSettings):
    port: int = 8004
    registry_url: str = "http://127.0.0.1:8001"
    """Champions, recipes and training data come from here; winners are registered here."""
    monitor_url: str = "http://127.0.0.1:8003"
    """Labelled traffic comes from the monitor's inference lake."""
    deployer_url: str = "http://127.0.0.1:8002"
    """What serves a model (the champion a gated version is checked against) comes from here."""
    ray_address: str | None = None
    """Train as Ray tasks on this cluster; None trains in a worker thread of this process."""
    consume_events: bool = True
    """Consume ``drift.detected``, ``retrain.requested``, ``dataset.updated`` and
    ``model.registered`` (a gated version's checks)."""
    job_num_cpus: float = Field(default=1.0, gt=0)
    """CPUs a training task reserves on Ray."""
    job_memory_mb: int = Field(default=2048, gt=0)
    """Memory a training task reserves on Ray."""
    job_timeout_s: float = Field(default=1800.0, gt=0)
    schedule_check_s: float = Field(default=30.0, gt=0)
    """How often scheduled retraining (``schedule_every_s`` in a policy) is checked."""
    canary_steps: str = "10,50,100"
    """Traffic steps of the canary a winner is rolled out with."""
    canary_step_interval_s: float = Field(default=60.0, gt=0)

    auto_retrain: bool = True
    cooldown_s: float = Field(default=3600.0, ge=0)
    min_new_labelled_rows: int = Field(default=100, ge=0)
    max_concurrent_jobs: int = Field(default=1, ge=1, le=1000)
    """Jobs running at once across all models: box-wide, set by the operator only (no model's
    policy can change it)."""
    min_improvement: float = Field(default=0.0, ge=0)
    holdout_fraction: float = Field(default=0.3, gt=0, lt=1)

    def default_policy(self) -> RetrainPolicy:
        return RetrainPolicy(
            auto_retrain=self.auto_retrain,
            cooldown_s=self.cooldown_s,
            min_new_labelled_rows=self.min_new_labelled_rows,
            min_improvement=self.min_improvement,
            holdout_fraction=self.holdout_fraction,
        )

    @property
    def steps(self) -> list[int]:
        return [int(s) for s in self.canary_steps.split(",") if s.strip()]
