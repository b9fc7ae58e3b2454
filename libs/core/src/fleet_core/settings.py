"""Settings shared by every service, read from ``FLEET_*`` environment variables.

Each service subclasses ``FleetSettings`` with its own fields (port, database
URL, ...). The defaults run the embedded stack; production sets the
environment. A placeholder JWT secret is refused outside embedded mode.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from fleet_core.auth import TokenAuthority

KafkaProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "secret", "embedded-dev-secret"})
DEFAULT_JWT_SECRET = "embedded-dev-secret"


def default_home() -> Path:
    return Path.home() / ".fleet"


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client reaches the brokers: the security protocol, SASL credentials and TLS files.

    ``client_kwargs`` is what every aiokafka client of the platform is built with (through
    ``fleet_core.broker.kafka_client_kwargs``), so one set of ``FLEET_KAFKA_*`` settings reaches
    the outbox relay, the consumers, the dead-letter producers, topic creation and the gateway."""

    protocol: KafkaProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_keyfile_password: str | None = field(default=None, repr=False)
    ssl_check_hostname: bool = True

    @property
    def uses_ssl(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of an SSL/SASL_SSL client: the CA file (or the system's CAs), the client
        certificate for mutual TLS, hostname checking on unless turned off; None without TLS."""
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(self.ssl_cafile) if self.ssl_cafile else None
        )
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile:
            context.load_cert_chain(
                str(self.ssl_certfile),
                str(self.ssl_keyfile) if self.ssl_keyfile else None,
                self.ssl_keyfile_password,
            )
        return context

    def client_kwargs(self) -> dict[str, Any]:
        """aiokafka keyword arguments (producer, consumer and admin client alike)."""
        kwargs: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password
        return kwargs


class KafkaServers(list[str]):
    """Kafka bootstrap servers together with the security to reach them.

    A list of ``host:port``, so every call site that took the servers as a list keeps working, and
    the clients ``fleet_core.broker`` builds from it take their TLS/SASL settings from
    ``security``. A plain list or string means PLAINTEXT (the embedded broker, tests)."""

    def __init__(self, servers: list[str] | str, security: KafkaSecurity | None = None) -> None:
        if isinstance(servers, str):
            servers = [s.strip() for s in servers.split(",") if s.strip()]
        super().__init__(servers)
        self.security = security or KafkaSecurity()


class KafkaSettings(BaseSettings):
    """The Kafka client settings (``FLEET_KAFKA_*``): where the brokers are and how to reach them.

    Readable on their own (``python -m fleet_core.topics`` holds no other secret) and part of every
    service's settings."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore", env_file=None)

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated."""
    kafka_security_protocol: KafkaProtocol = "PLAINTEXT"
    """`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` (docs/operations.md, Kafka security)."""
    kafka_sasl_mechanism: SaslMechanism | None = None
    """`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; required with a SASL protocol."""
    kafka_sasl_username: str | None = None
    """The service's Kafka principal; required with a SASL protocol."""
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    """PEM file of the CA(s) that signed the brokers' certificates; the system's CAs if unset."""
    kafka_ssl_certfile: Path | None = None
    """Client certificate (PEM) for mutual TLS; may hold the key too."""
    kafka_ssl_keyfile: Path | None = None
    """The client certificate's private key (PEM), when not in the certificate file."""
    kafka_ssl_keyfile_password: SecretStr | None = None
    kafka_ssl_check_hostname: bool = True
    """Check that a broker's certificate names the host connected to. Off only for test brokers."""

    @model_validator(mode="after")
    def _consistent_kafka_security(self) -> KafkaSettings:
        # A setting that would be silently ignored is a misconfiguration: say so at start.
        protocol = self.kafka_security_protocol
        sasl = protocol in ("SASL_PLAINTEXT", "SASL_SSL")
        if sasl:
            missing = [
                f"FLEET_KAFKA_{name.upper()}"
                for name in ("sasl_mechanism", "sasl_username", "sasl_password")
                if not getattr(self, f"kafka_{name}")
            ]
            if missing:
                raise ValueError(f"FLEET_KAFKA_SECURITY_PROTOCOL={protocol} needs {', '.join(missing)}")
        elif self.kafka_sasl_mechanism or self.kafka_sasl_username or self.kafka_sasl_password:
            raise ValueError(
                f"FLEET_KAFKA_SASL_* is set but FLEET_KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                "SASL: set it to SASL_SSL or SASL_PLAINTEXT"
            )
        tls_files = self.kafka_ssl_cafile or self.kafka_ssl_certfile or self.kafka_ssl_keyfile
        if tls_files and protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                f"FLEET_KAFKA_SSL_* files are set but FLEET_KAFKA_SECURITY_PROTOCOL={protocol} does not use "
                "TLS: set it to SSL or SASL_SSL"
            )
        if self.kafka_ssl_keyfile and not self.kafka_ssl_certfile:
            raise ValueError("FLEET_KAFKA_SSL_KEYFILE needs FLEET_KAFKA_SSL_CERTFILE")
        return self

    @property
    def kafka_security(self) -> KafkaSecurity:
        def secret(value: SecretStr | None) -> str | None:
            return value.get_secret_value() if value else None

        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            sasl_username=self.kafka_sasl_username,
            sasl_password=secret(self.kafka_sasl_password),
            ssl_cafile=self.kafka_ssl_cafile,
            ssl_certfile=self.kafka_ssl_certfile,
            ssl_keyfile=self.kafka_ssl_keyfile,
            ssl_keyfile_password=secret(self.kafka_ssl_keyfile_password),
            ssl_check_hostname=self.kafka_ssl_check_hostname,
        )

    @property
    def kafka_servers(self) -> KafkaServers:
        """The bootstrap servers, carrying the security settings to every client built from them."""
        return KafkaServers(self.kafka_bootstrap, self.kafka_security)


class FleetSettings(KafkaSettings):
    """What every ModelFleet process needs to know."""

    model_config = SettingsConfigDict(env_prefix="FLEET_", extra="ignore", env_file=None)

    mode: Literal["embedded", "production"] = "embedded"
    """`embedded` runs everything on one box with SQLite and local files; `production` refuses
    placeholder secrets."""
    home: Path = Field(default_factory=default_home)
    """Where embedded databases, artifacts and the CLI config live."""
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
