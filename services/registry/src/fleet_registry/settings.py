"""Registry settings (``FLEET_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field

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
