"""Settings of the serving engine, read from ``FLEET_*`` environment variables in every replica."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from fleet_core.settings import FleetSettings

if TYPE_CHECKING:
    from fleet_core.auth import TokenAuthority

TRUSTED_ROOTS = ("sklearn.", "numpy.", "scipy.")


class ServingSettings(FleetSettings):
    """What a serving replica needs beyond the shared settings.

    Ray workers do not inherit the driver's environment: the deployer passes the ``FLEET_*``
    variables below (and the artifact store's) to replicas through ``runtime_env.env_vars``.
    A replica never signs or verifies a token, so it needs no JWT secret, even in production
    (the Ray image sets ``FLEET_MODE=production`` and nothing hands replicas the secret).
    """

    serving_allow_python: bool | None = None
    """``FLEET_SERVING_ALLOW_PYTHON``: may replicas run ``python``-flavor models (custom code)?
    Unset means yes in embedded mode and no in production; the registry already restricts who may
    register such a model (deployer role), this is the serving side's own switch."""
    serving_trusted_types: list[str] = Field(default_factory=list)
    """``FLEET_SERVING_TRUSTED_TYPES`` (a JSON list): extra sklearn/numpy/scipy type names that
    skops may load beyond the built-in allowlist. Names outside those packages are refused."""
    serving_python_dir: str | None = None
    """Where python-flavor archives are unpacked; default ``FLEET_HOME/serving/python``."""
    serving_python_max_unpacked_mb: int = Field(default=256, ge=1, le=65536)
    """A python-flavor archive that inflates past this many MiB is refused (zip bombs)."""
    serving_python_max_members: int = Field(default=10_000, ge=1, le=1_000_000)
    """A python-flavor archive with more members than this is refused."""

    @field_validator("serving_trusted_types")
    @classmethod
    def _only_library_types(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not n.startswith(TRUSTED_ROOTS)]
        if bad:
            raise ValueError(f"only sklearn/numpy/scipy types may be trusted, not {bad}")
        return names

    def _refuse_placeholder_secret(self) -> ServingSettings:  # type: ignore[override]
        """Replaces the shared check (same name, so pydantic runs this one): no secret is needed."""
        return self

    def token_authority(self) -> TokenAuthority:
        raise RuntimeError("a serving replica holds no JWT secret and cannot sign or verify tokens")

    @property
    def python_allowed(self) -> bool:
        if self.serving_allow_python is not None:
            return self.serving_allow_python
        return self.mode == "embedded"

    @classmethod
    def of(cls, settings: FleetSettings) -> ServingSettings:
        """``settings`` as serving settings: the given shared fields, the serving ones from the env."""
        if isinstance(settings, ServingSettings):
            return settings
        return cls(**settings.model_dump())
