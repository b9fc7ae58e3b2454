"""``FLEET_KAFKA_*`` security settings: read from the environment, checked for consistency, and
handed to every Kafka client the platform builds (aiokafka and FastStream alike).

TLS and SASL/PLAIN are shown on the wire in tests/integration/core/test_kafka_security.py; SCRAM
only here, at the level of the client arguments: the embedded broker (Tansu 0.6) cannot
authenticate anyone (it creates users only while it does not require authentication, in memory)."""

from __future__ import annotations

import ast
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.kafka.security import parse_security
from pydantic import ValidationError

from fleet_core.broker import faststream_security, kafka_client_kwargs, make_broker
from fleet_core.settings import FleetSettings, KafkaSecurity, KafkaSettings

REPO = Path(__file__).resolve().parents[3]
PASSWORD = "kafka-password-of-the-registry-0123456789"


def _ca_file(tmp_path: Path) -> Path:
    """A self-signed CA certificate (PEM), as FLEET_KAFKA_SSL_CAFILE would name."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fleet unit ca")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_ssl_settings_from_the_environment_reach_the_client_arguments(
    monkeypatch: pytest.MonkeyPatch, mechanism: str, tmp_path: Path
) -> None:
    ca = _ca_file(tmp_path)
    monkeypatch.setenv("FLEET_KAFKA_BOOTSTRAP", "kafka-1:9093,kafka-2:9093")
    monkeypatch.setenv("FLEET_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FLEET_KAFKA_SASL_MECHANISM", mechanism)
    monkeypatch.setenv("FLEET_KAFKA_SASL_USERNAME", "registry")
    monkeypatch.setenv("FLEET_KAFKA_SASL_PASSWORD", PASSWORD)
    monkeypatch.setenv("FLEET_KAFKA_SSL_CAFILE", str(ca))

    kwargs = kafka_client_kwargs(FleetSettings().kafka_servers)

    assert kwargs["bootstrap_servers"] == ["kafka-1:9093", "kafka-2:9093"]
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
        mechanism,
        "registry",
        PASSWORD,
    )
    context = kwargs["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert any("fleet unit ca" in str(c.get("subject")) for c in context.get_ca_certs())


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SSL", None),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_SSL", "SCRAM-SHA-256"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-512"),
    ],
)
def test_the_faststream_broker_gets_the_same_security_as_the_aiokafka_clients(
    protocol: str, mechanism: str | None
) -> None:
    sasl = protocol.startswith("SASL")
    security = KafkaSecurity(
        protocol=protocol,  # type: ignore[arg-type]
        sasl_mechanism=mechanism,  # type: ignore[arg-type]
        sasl_username="deployer" if sasl else None,
        sasl_password=PASSWORD if sasl else None,
        ssl_check_hostname=False,
    )
    ours = security.client_kwargs()
    theirs = parse_security(faststream_security(security))
    assert {k: v for k, v in theirs.items() if k != "ssl_context"} == {
        k: v for k, v in ours.items() if k != "ssl_context"
    }
    assert (theirs["ssl_context"] is None) == (ours.get("ssl_context") is None)


def test_make_broker_configures_faststream_with_the_carried_security() -> None:
    settings = FleetSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="monitor",
        kafka_sasl_password=PASSWORD,
    )
    broker = make_broker(settings.kafka_servers)
    config = broker.config.broker_config.builder.keywords  # what FastStream builds its consumers with
    assert config["security_protocol"] == "SASL_PLAINTEXT"
    assert (config["sasl_mechanism"], config["sasl_plain_username"]) == ("SCRAM-SHA-512", "monitor")


def test_plain_servers_are_plaintext() -> None:
    assert kafka_client_kwargs("a:9092, b:9092") == {
        "bootstrap_servers": ["a:9092", "b:9092"],
        "security_protocol": "PLAINTEXT",
    }


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FLEET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "FLEET_KAFKA_SASL_MECHANISM"),
        (
            {"FLEET_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FLEET_KAFKA_SASL_MECHANISM": "PLAIN"},
            "FLEET_KAFKA_SASL_USERNAME",
        ),
        ({"FLEET_KAFKA_SASL_USERNAME": "registry"}, "FLEET_KAFKA_SASL_*"),
        ({"FLEET_KAFKA_SSL_CAFILE": "/etc/ca.pem"}, "FLEET_KAFKA_SSL_*"),
        ({"FLEET_KAFKA_SECURITY_PROTOCOL": "TLS"}, "kafka_security_protocol"),
        ({"FLEET_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "FLEET_KAFKA_SASL_MECHANISM": "GSSAPI"}, "kafka_sasl"),
    ],
)
def test_inconsistent_kafka_security_settings_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=named.replace("*", r"\*")):
        KafkaSettings()


def test_the_kafka_password_stays_out_of_reprs() -> None:
    settings = FleetSettings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="PLAIN",
        kafka_sasl_username="gateway",
        kafka_sasl_password=PASSWORD,
    )
    assert PASSWORD not in repr(settings) and PASSWORD not in repr(settings.kafka_servers.security)


KAFKA_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "KafkaBroker"}


def _kafka_client_calls() -> list[tuple[str, int, str, ast.Call]]:
    calls = []
    for root in ("libs", "services"):
        for path in sorted((REPO / root).glob("*/src/**/*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                    if name in KAFKA_CLIENTS:
                        calls.append((str(path.relative_to(REPO)), node.lineno, name, node))
    return calls


def test_every_kafka_client_the_services_build_takes_the_security_settings() -> None:
    """A new client built by hand without them would talk PLAINTEXT to a SASL_SSL cluster."""
    calls = _kafka_client_calls()
    assert len(calls) >= 8  # the outbox, batch consumer (2), admin, FastStream, gateway (3)
    unsecured = []
    for where, line, name, call in calls:
        spread = [k.value for k in call.keywords if k.arg is None]
        takes_kwargs = any(
            isinstance(v, ast.Subscript | ast.Call) and "kafka_client_kwargs" in ast.unparse(v)
            for v in spread + list(call.args)
        )
        takes_security = any(k.arg == "security" for k in call.keywords) or (
            name == "KafkaBroker" and "kafka_client_kwargs" in ast.unparse(call)
        )
        if not (takes_kwargs or takes_security):
            unsecured.append(f"{where}:{line} {name}")
    assert unsecured == []
