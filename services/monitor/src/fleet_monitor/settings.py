"""Monitor settings (``FLEET_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from fleet_core.model_series import ModelSeriesSetting
from fleet_core.privacy import EMBEDDED_PII_SALT, check_pii_salt
from fleet_core.settings import ServiceSettings
from fleet_monitor.anomaly import AnomalyThresholds
from fleet_monitor.config import ModelConfig
from fleet_monitor.engine import EngineSettings
from fleet_monitor.lake import LakeSettings


class MonitorSettings(ServiceSettings):
    port: int = 8003
    consume_events: bool = True
    """Consume ``inference.logged``, ``inference.feedback``, ``model.registered`` and
    ``rollout.updated``; False serves the API only."""

    bucket_s: float = Field(default=10.0, gt=0)
    """Width of one time bucket; windows, charts and anomaly baselines are made of buckets."""
    window_s: float = Field(default=60.0, gt=0)
    """The sliding window behind live rates, error rates and latency quantiles."""
    history_buckets: int = Field(default=360, ge=10, le=100_000)
    """Buckets kept per series (charts and anomaly baselines): 360 x 10 s = one hour."""
    tick_interval_s: float = Field(default=1.0, gt=0)
    """How often buckets are closed and windows and rollouts are checked."""
    analysis_interval_s: float = Field(default=10.0, gt=0)
    """How often each active canary or A/B rollout gets a ``rollout.analysis`` verdict."""
    idle_after_s: float = Field(default=300.0, gt=0)
    """A model with no request for this long shows as idle."""
    registry_url: str | None = "http://127.0.0.1:8001"
    """Where to look up a version seen in traffic before (or without) its ``model.registered``;
    None disables the lookup."""
    ingest_batch: int = Field(default=2000, ge=1)
    """``inference.logged`` records fetched per poll."""

    drift_window_rows: int = Field(default=500, ge=20)
    drift_window_s: float = Field(default=300.0, gt=0)
    drift_min_rows: int = Field(default=100, ge=10)
    concept_window_rows: int = Field(default=200, ge=20)
    anomaly_warmup_buckets: int = Field(default=10, ge=3)
    anomaly_fire_after: int = Field(default=2, ge=1)
    anomaly_resolve_after: int = Field(default=3, ge=1)

    lake_enabled: bool = True
    lake_uri: str | None = None
    """``file:///path`` or ``s3://bucket/prefix``; defaults to FLEET_HOME/lake."""
    lake_retention_days: int = Field(default=30, ge=1)
    lake_flush_interval_s: float = Field(default=10.0, gt=0)

    alertmanager_url: str | None = None
    """Alertmanager (or anything speaking its ``POST /api/v2/alerts``) to push alerts to."""
    public_url: str = "http://127.0.0.1:8003"
    """Where the dashboard is reachable; alerts link back to it."""
    anonymous_read: bool | None = None
    """Dashboard and read endpoints without a token, seeing every team's models. Only for the
    embedded stack (one user on one box): the default is on when ``FLEET_MODE=embedded`` and off
    otherwise, and turning it on in production is refused at start. Off, every read needs a viewer
    token and shows only the token's teams."""
    pii_salt: SecretStr | None = None
    """The gateway's ``FLEET_PII_SALT`` (the same value): the gateway hashes PII fields with it before
    logging, and the monitor hashes the reference categories of those fields with it so that drift
    compares hashed traffic with hashed reference values. The embedded salt by default in embedded
    mode; unset in production, PII fields are left out of drift and range checks (never a false
    drift), and only the serving monitor needs it (not the migrate job)."""
    stream_interval_s: float = Field(default=2.0, gt=0)
    tune_gc: bool = True
    """Freeze the start-up heap and collect young objects less often (see ``tune_garbage_collector``);
    off when the monitor is embedded in another process, such as a test runner."""
    max_series: int = Field(default=5000, ge=1)
    """Most (model, version, arm) series exported to Prometheus; the rest are counted, not exported."""
    metrics_model_series: ModelSeriesSetting = "all"
    """Which models keep their own series in Prometheus: ``all``, ``top:N`` (the N busiest, the rest
    folded into ``model="_other"``) or ``team`` (one ``_other`` series per team); see
    docs/monitoring.md for what each exports at 1,000 models."""
    metrics_rank_interval_s: float = Field(default=60.0, gt=0)
    """How often ``top:N`` re-ranks the models by the traffic since the last ranking."""

    @model_validator(mode="after")
    def _production_checks(self) -> MonitorSettings:
        if self.anonymous_read is None:
            self.anonymous_read = self.mode == "embedded"
        elif self.anonymous_read and self.mode != "embedded":
            # Anonymous readers see every team's traffic, alerts and lake rows: never on a shared fleet.
            raise ValueError(
                "FLEET_ANONYMOUS_READ=true is refused outside embedded mode (FLEET_MODE="
                f"{self.mode}): every monitor read needs a viewer token of the model's team"
            )
        if self.pii_salt is None and self.mode == "embedded":
            self.pii_salt = SecretStr(EMBEDDED_PII_SALT)
        if self.pii_salt is not None:
            check_pii_salt(self.pii_salt.get_secret_value(), self.mode)
        return self

    def engine_settings(self) -> EngineSettings:
        return EngineSettings(
            bucket_s=self.bucket_s,
            history_buckets=self.history_buckets,
            window_s=self.window_s,
            analysis_interval_s=self.analysis_interval_s,
            idle_after_s=self.idle_after_s,
            anomaly=AnomalyThresholds(
                warmup_buckets=self.anomaly_warmup_buckets,
                fire_after=self.anomaly_fire_after,
                resolve_after=self.anomaly_resolve_after,
            ),
            defaults=ModelConfig(
                drift_window_rows=self.drift_window_rows,
                drift_window_s=self.drift_window_s,
                drift_min_rows=self.drift_min_rows,
                concept_window_rows=self.concept_window_rows,
            ),
            pii_salt=self.pii_salt.get_secret_value() if self.pii_salt is not None else None,
        )

    def lake_settings(self) -> LakeSettings:
        return LakeSettings(
            uri=self.lake_uri or f"file://{self.home / 'lake'}",
            retention_days=self.lake_retention_days,
            s3_endpoint=self.s3_endpoint,
            s3_access_key=self.s3_access_key.get_secret_value() if self.s3_access_key else None,
            s3_secret_key=self.s3_secret_key.get_secret_value() if self.s3_secret_key else None,
            s3_region=self.s3_region,
            s3_secure=self.s3_secure,
        )
