"""Settings shared by every service, read from ``FLEET_*`` environment variables.

Each service subclasses ``FleetSettings`` with its own fields (port, database
URL, ...). The defaults run the embedded stack; production sets the
environment. A placeholder JWT secret is refused outside embedded mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from fleet_core.auth import TokenAuthority

PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "secret", "embedded-dev-secret"})
DEFAULT_JWT_SECRET = "embedded-dev-secret"


def default_home() -> Path:
    return Path.home() / ".fleet"


class FleetSettings(BaseSettings):
    """What every ModelFleet process needs to know."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore", env_file=None)

    mode: Literal["embedded", "production"] = "embedded"
    """`embedded` runs everything on one box with SQLite and local files; `production` refuses
    placeholder secrets."""
    home: Path = Field(default_factory=default_home)
    """Where embedded databases, artifacts and the CLI config live."""
    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated."""
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    """HMAC key for bearer tokens; every service verifies tokens locally with it."""
    jwt_previous_secrets: SecretStr | None = None
    """Comma-separated secrets that signed tokens before a key rotation: still accepted when
    verifying, never used to sign. Empty again once the rotation is over (docs/operations.md)."""
    jwt_issuer: str = "modelfleet"
    registry_url: str | None = "http://127.0.0.1:8001"
    """The registry, the owner of models, versions, datasets and tokens."""
    revocation_refresh_s: float = Field(default=10.0, gt=0, le=3600)
    """How often every service refreshes the registry's list of revoked tokens: a revoked token
    is refused everywhere within this delay."""
    log_level: str = "INFO"
    log_json: bool = True
    dlq_max_attempts: int = Field(default=3, ge=1, le=100)
    """A consumed message that fails this many times goes to `<topic>.dlq`."""
    outbox_poll_interval_s: float = Field(default=1.0, gt=0)
    s3_endpoint: str | None = None
    """S3 API endpoint (host:port or URL) for `s3://` artifact URIs; None means AWS."""
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str | None = None
    s3_secure: bool = True
    s3_sse: Literal["s3", "kms", "none"] | None = None
    """Server-side encryption of every object the platform writes to S3: `s3` (SSE-S3), `kms`
    (SSE-KMS with `s3_sse_kms_key_id`) or `none`. Default: `s3` in production, `none` embedded."""
    s3_sse_kms_key_id: str | None = None

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> FleetSettings:
        secret = self.jwt_secret.get_secret_value()
        if self.mode != "embedded" and (secret in PLACEHOLDER_SECRETS or len(secret) < 32):
            raise ValueError(
                "FLEET_JWT_SECRET must be set to a random value of at least 32 characters "
                "outside embedded mode"
            )
        if self.s3_sse == "kms" and not self.s3_sse_kms_key_id:
            raise ValueError("FLEET_S3_SSE=kms needs FLEET_S3_SSE_KMS_KEY_ID (the KMS key to encrypt with)")
        if self.mode != "embedded" and any(len(s) < 32 for s in self.previous_jwt_secrets):
            raise ValueError("each of FLEET_JWT_PREVIOUS_SECRETS must be at least 32 characters")
        return self

    @property
    def resolved_s3_sse(self) -> Literal["s3", "kms", "none"]:
        if self.s3_sse is not None:
            return self.s3_sse
        return "none" if self.mode == "embedded" else "s3"

    @property
    def previous_jwt_secrets(self) -> list[str]:
        raw = self.jwt_previous_secrets.get_secret_value() if self.jwt_previous_secrets else ""
        return [s.strip() for s in raw.split(",") if s.strip()]

    def token_authority(self) -> TokenAuthority:
        """Signs with FLEET_JWT_SECRET; verifies with it or a previous secret (key rotation)."""
        from fleet_core.auth import TokenAuthority

        return TokenAuthority(self.jwt_secret.get_secret_value(), self.jwt_issuer, self.previous_jwt_secrets)

    @property
    def kafka_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]


class ServiceSettings(FleetSettings):
    """Settings of a service with an HTTP API and a database."""

    host: str = "127.0.0.1"
    port: int = 8000
    database_url: str | None = None
    """SQLAlchemy async URL; defaults to a SQLite file under FLEET_HOME/data. ``{service}`` in it is
    replaced by the service's name, so one setting gives each service its own database."""
    run_migrations: bool = True
    """Apply Alembic migrations at start (embedded convenience; production runs `migrate`)."""

    def resolved_database_url(self, service: str) -> str:
        if self.database_url:
            return self.database_url.replace("{service}", service)
        path = self.home / "data" / f"{service}.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{path}"
