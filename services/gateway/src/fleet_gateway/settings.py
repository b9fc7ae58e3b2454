"""Gateway settings (``FLEET_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field, model_validator

from fleet_core.model_series import ModelSeriesSetting
from fleet_core.privacy import EMBEDDED_PII_SALT, check_pii_salt
from fleet_core.settings import FleetSettings


class GatewaySettings(FleetSettings):
    host: str = "127.0.0.1"
    port: int = 8000
    grpc_port: int = Field(default=8081, ge=0, le=65535)
    """The Open Inference Protocol over gRPC (``inference.GRPCInferenceService``) on ``host`` at
    this port, in the same process as HTTP; 0 turns it off. A message may be ``max_body_mb``
    long (``RESOURCE_EXHAUSTED`` above), an answer four times that."""
    grpc_shutdown_grace_s: float = Field(default=5.0, ge=0)
    """At shutdown, gRPC calls in flight get this long to finish (new ones are refused at once)."""
    deployer_url: str = "http://127.0.0.1:8002"
    """Where ``GET /v1/routes`` bootstraps and re-syncs the route tables."""
    ray_address: str | None = "auto"
    """Ray cluster to join as a driver (``auto``: the local cluster the deployer started)."""
    routes_resync_s: float = Field(default=30.0, gt=0)
    """Full re-sync from the deployer this often, on top of ``rollout.updated`` events."""
    routes_refresh_min_interval_s: float = Field(default=1.0, ge=0)
    """A model the deployer did not know is not looked up again for this long."""
    routes_unknown_lookups_per_s: float = Field(default=20.0, gt=0)
    """On-demand look-ups (a request names a model the cache lacks) that the deployer may answer
    "unknown", per second over all names: bounds what probing random names costs the deployer."""
    routes_fetch_timeout_s: float = Field(default=3.0, gt=0)
    repository_timeout_s: float = Field(default=120.0, gt=0)
    """How long ``/v2/repository/...`` waits for the deployer (a load places the model on Ray)."""
    follow_rollouts: bool = True
    """Consume ``rollout.updated`` (no consumer group: every gateway instance sees every update)."""
    log_queue_size: int = Field(default=10_000, ge=1)
    """Inference log records waiting for the broker; beyond this they are shed and counted."""
    log_batch_size: int = Field(default=500, ge=1)
    log_linger_ms: int = Field(default=50, ge=0)
    pii_salt: str = EMBEDDED_PII_SALT
    """Salt of the hash that replaces PII fields in logged inputs."""
    rate_limit_rps: float = Field(default=1000.0, gt=0)
    """Sustained requests per second per token."""
    rate_limit_burst: int = Field(default=2000, ge=1)
    token_cache_s: float = Field(default=30.0, ge=0)
    """Verified tokens are trusted this long (never past their expiry) without re-verifying."""
    max_body_mb: float = Field(default=8.0, gt=0)
    """Largest request body, in MiB (413 above)."""
    max_rows: int = Field(default=10_000, ge=1)
    """Most rows in one inference request (422 above)."""
    metrics_model_series: ModelSeriesSetting = "all"
    """Which models keep their own series in Prometheus: ``all``, ``top:N`` (the N busiest, the rest
    folded into ``model="_other"``) or ``team`` (one ``_other`` series per team); see
    docs/monitoring.md for what each exports at 1,000 models."""
    metrics_rank_interval_s: float = Field(default=60.0, gt=0)
    """How often ``top:N`` re-ranks the models by the traffic since the last ranking."""
    predict_timeout_s: float = Field(default=30.0, gt=0)
    predict_retries: int = Field(default=2, ge=0, le=5)
    """A model call whose replica died (not a model error, not a timeout) is sent again this many
    times at most, within ``predict_timeout_s``; counted in ``fleet_gateway_replica_retries``."""
    batch_max_rows: int = Field(default=32, ge=1, le=10_000)
    """Adaptive batching: concurrent requests to one version are sent as one model call of at most
    this many rows (1 turns batching off). A version's deployment may set its own
    (``batching.max_rows``); see docs/serving.md."""
    batch_max_delay_ms: float = Field(default=5.0, ge=0, le=1000)
    """The longest a request waits for a busy version's calls before it is sent anyway."""
    batch_max_inflight: int = Field(default=2, ge=1, le=64)
    """Calls of one version running at once before new requests wait to be gathered."""
    batch_across_models: bool = True
    """Pool models going to the same pool replica share its calls (rows of several models in one
    call), so a fleet of quiet models is batched like one busy model. A model with its own
    batching settings is still batched alone by them."""
    local_models_mb: float = Field(default=256.0, ge=0)
    """Small models of the shared pool that are called often are also loaded in the gateway process,
    within this many MiB, and answered there without a hop to Ray (0 turns it off); see
    docs/serving.md "Models served in the gateway"."""
    local_model_max_mb: float = Field(default=4.0, ge=0)
    """Largest artifact the gateway loads itself; larger models are served by the pool only."""
    local_promote_after: int = Field(default=2, ge=1)
    """Calls through Ray before a model is loaded in the gateway (one call alone does not)."""
    local_max_predict_ms: float = Field(default=2.0, gt=0)
    """A local model whose calls average more than this much CPU goes back to the pool for an hour:
    its calls would hold the gateway's event loop."""
    local_keep_s: float = Field(default=10.0, ge=0)
    """A local model called within this long is not evicted to make room for another."""
    local_idle_s: float = Field(default=300.0, gt=0)
    """A local model not called for this long is unloaded."""
    shadow_timeout_s: float = Field(default=10.0, gt=0)
    """A shadow call is abandoned (and logged as an error) after this long."""
    feedback_window_s: float = Field(default=86_400.0, gt=0)
    """``/v1/feedback`` accepts a request id this long after this gateway answered it (24 h)."""
    feedback_memory_per_model: int = Field(default=20_000, ge=1)
    """... and only among each model's most recent answered requests (a busy model's window is
    shorter). The memory is per gateway process: not shared between instances, lost on restart."""
    feedback_receipt_ttl_s: float = Field(default=30 * 86_400.0, gt=0)
    """How long an answer's ``X-Fleet-Feedback-Receipt`` lets any instance accept its feedback."""
    feedback_timeout_s: float = Field(default=3.0, gt=0)
    """How long ``/v1/feedback`` waits for the broker's acknowledgement before answering 503."""

    @model_validator(mode="after")
    def _refuse_placeholder_salt(self) -> GatewaySettings:
        check_pii_salt(self.pii_salt, self.mode)
        return self

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * 1024 * 1024)
