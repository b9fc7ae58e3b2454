"""Registry settings (``FLEET_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from fleet_core.privacy import EMBEDDED_PII_SALT, PiiHasher, check_pii_salt
from fleet_core.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    port: int = 8001
    artifact_uri: str | None = None
    """Where artifacts go: ``file:///path`` (default: FLEET_HOME/artifacts) or ``s3://bucket/prefix``."""
    max_artifact_mb: float = Field(default=512, gt=0)
    """Largest model artifact accepted, in MiB (413 above)."""
    max_dataset_mb: float = Field(default=2048, gt=0)
    """Largest dataset file accepted, in MiB (413 above)."""
    consume_events: bool = True
    """Consume `audit.recorded` from the other services into the platform's audit log."""
    webhook_allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost", "::1"])
    """Hosts a webhook may point at (``FLEET_WEBHOOK_ALLOWED_HOSTS``, a JSON list): exact names, or
    ``*.example.com`` for its subdomains. The registry posts events to these URLs, so an open list
    would let any deployer make it call into the cluster's own network; loopback by default."""
    webhook_max_attempts: int = Field(default=8, ge=1, le=50)
    """Attempts per delivery before it is marked failed (backoff doubles from the base)."""
    webhook_retry_base_s: float = Field(default=2.0, gt=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)
    pii_salt: SecretStr | None = None
    """The gateway's ``FLEET_PII_SALT`` (the same value): at registration the values of PII fields in
    reference profiles and example inputs are replaced by the keyed hash the gateway logs, so the
    registry stores no raw PII. The embedded salt by default in embedded mode; outside it a
    placeholder or short salt is refused, and the serving registry does not start without one
    (the migrate job and ``issue-token`` need none)."""

    @model_validator(mode="after")
    def _check_pii_salt(self) -> RegistrySettings:
        if self.pii_salt is None and self.mode == "embedded":
            self.pii_salt = SecretStr(EMBEDDED_PII_SALT)
        if self.pii_salt is not None:
            check_pii_salt(self.pii_salt.get_secret_value(), self.mode)
        return self

    def pii_hasher(self) -> PiiHasher:
        """The hasher registrations use; a ValueError naming ``FLEET_PII_SALT`` when it is unset."""
        if self.pii_salt is None:
            raise ValueError(
                "FLEET_PII_SALT must be set (the gateway's salt): the registry hashes the PII values of "
                "reference profiles and example inputs at registration"
            )
        return PiiHasher(self.pii_salt.get_secret_value())

    def resolved_artifact_uri(self) -> str:
        if self.artifact_uri:
            return self.artifact_uri
        path = self.home / "artifacts"
        path.mkdir(parents=True, exist_ok=True)
        return path.as_uri()

    @property
    def max_artifact_bytes(self) -> int:
        return int(self.max_artifact_mb * 1024 * 1024)

    @property
    def max_dataset_bytes(self) -> int:
        return int(self.max_dataset_mb * 1024 * 1024)
