"""Kafka over TLS with the platform's own clients, built from ``FLEET_KAFKA_*`` settings.

The embedded broker (Tansu 0.6) cannot serve TLS itself: its ``--cert`` and ``--key`` flags refuse
to be given together. So the broker listens on loopback behind a TLS-terminating proxy that
requires a client certificate (mutual TLS) and advertises the proxy's address; every byte a
client exchanges with Kafka crosses that TLS listener. The certificates are made here, with
``cryptography``. Shown: the outbox relay, topic creation, the FastStream broker and the batch
consumer round-trip events over SSL; a PLAINTEXT client, a client without a certificate and a
client that does not trust the broker's CA are refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import MetaData

from fleet_core.broker import BatchConsumer, ensure_topics, make_broker
from fleet_core.db import Database
from fleet_core.events import CloudEvent, RetrainRequested, Topic, make_event
from fleet_core.outbox import OutboxRelay, enqueue, messaging_tables
from fleet_core.settings import FleetSettings
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

TOPIC = Topic.RETRAIN_REQUESTED


# --------------------------------------------------------------------------- certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class Authority:
    """A throwaway certificate authority."""

    def __init__(self, name: str) -> None:
        self.key = _key()
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def issue(self, common_name: str, *, server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = _key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(self.key, hashes.SHA256()), key


@dataclass
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca, other = Authority("fleet test ca"), Authority("someone else's ca")
    server_cert, server_key = ca.issue("kafka", server=True)
    client_cert, client_key = ca.issue("registry", server=False)
    files = {
        "ca.pem": _pem_cert(ca.cert),
        "other-ca.pem": _pem_cert(other.cert),
        "server.pem": _pem_cert(server_cert),
        "server.key": _pem_key(server_key),
        "client.pem": _pem_cert(client_cert),
        "client.key": _pem_key(client_key),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return Pki(*(tmp_path / name for name in files))


# --------------------------------------------------------------------------- the TLS listener


class TlsListener:
    """Terminates mutual TLS on ``port`` and forwards the bytes to the broker's loopback port."""

    def __init__(self, port: int, upstream_port: int, context: ssl.SSLContext) -> None:
        self.port, self.upstream_port, self.context = port, upstream_port, context
        self.server: asyncio.Server | None = None
        self.tls_sessions = 0
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.context)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.tls_sessions += 1  # only after a completed handshake with a trusted client certificate
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._pipes.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self._pipes.difference_update(pipes)

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@dataclass
class TlsKafka:
    bootstrap: str
    listener: TlsListener


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, int]]:
    tls_port = free_port()
    broker = EmbeddedBroker(log_file=tmp_path / "tansu.log", advertised=f"127.0.0.1:{tls_port}")
    broker.start()
    yield broker, tls_port
    broker.stop(timeout_s=0.5)


@pytest.fixture
async def tls_kafka(tls_broker: tuple[EmbeddedBroker, int], pki: Pki) -> AsyncIterator[TlsKafka]:
    broker, tls_port = tls_broker
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: a client without our CA's certificate is refused
    listener = TlsListener(tls_port, broker.port, context)
    await listener.start()
    yield TlsKafka(f"127.0.0.1:{tls_port}", listener)
    await listener.stop()


def ssl_settings(kafka: TlsKafka, pki: Pki, **overrides: Any) -> FleetSettings:
    """A service's settings as its environment would give them (FLEET_KAFKA_*)."""
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka.bootstrap,
        "kafka_security_protocol": "SSL",
        "kafka_ssl_cafile": pki.ca,
        "kafka_ssl_certfile": pki.client_cert,
        "kafka_ssl_keyfile": pki.client_key,
    }
    values.update(overrides)
    return FleetSettings(**{k: v for k, v in values.items() if v is not None})


def retrain(model: str) -> CloudEvent[Any]:
    return make_event(TOPIC, RetrainRequested(model=model, reason="manual", requested_by="test"), source="/t")


# --------------------------------------------------------------------------- tests


async def test_the_platforms_clients_round_trip_events_over_mutual_tls(
    tls_kafka: TlsKafka, pki: Pki, tmp_path: Path
) -> None:
    settings = ssl_settings(tls_kafka, pki)
    servers = settings.kafka_servers  # what every service hands its clients

    created = await ensure_topics(servers, [TOPIC.value, TOPIC.dlq], timeout_s=20)  # admin client
    assert set(created) == {TOPIC.value, TOPIC.dlq}

    metadata = MetaData()
    tables = messaging_tables(metadata)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    from_outbox = retrain("churn")
    async with db.transaction() as s:
        await enqueue(s, tables.outbox, TOPIC, from_outbox)
    relay = OutboxRelay(db.sessions, tables.outbox, servers, poll_interval_s=0.1, publish_timeout_s=10)

    from_faststream = retrain("fraud")
    faststream = make_broker(servers)

    received: list[str] = []
    arrived = asyncio.Event()

    async def handle(events: list[CloudEvent[Any]]) -> None:
        received.extend(event.id for event in events)
        if len(received) >= 2:
            arrived.set()

    consumer = BatchConsumer(servers, {TOPIC: handle}, consumer="tls-test")
    relay.start()
    try:
        await faststream.connect()
        await faststream.publish(from_faststream.to_bytes(), TOPIC.value, key=b"fraud")
        await consumer.start()
        await asyncio.wait_for(arrived.wait(), 60)
    finally:
        await consumer.stop()
        await faststream.stop()
        await relay.stop()
        await db.dispose()

    assert sorted(received) == sorted([from_outbox.id, from_faststream.id])
    assert tls_kafka.listener.tls_sessions > 0


@pytest.mark.parametrize(
    ("client", "overrides"),
    [
        (
            "a PLAINTEXT client",
            {
                "kafka_security_protocol": "PLAINTEXT",
                "kafka_ssl_cafile": None,
                "kafka_ssl_certfile": None,
                "kafka_ssl_keyfile": None,
            },
        ),
        ("a client without a certificate", {"kafka_ssl_certfile": None, "kafka_ssl_keyfile": None}),
        ("a client that does not trust the broker's CA", {"kafka_ssl_cafile": "other"}),
    ],
)
async def test_a_client_without_the_right_tls_settings_is_refused(
    tls_kafka: TlsKafka, pki: Pki, client: str, overrides: dict[str, Any]
) -> None:
    if overrides.get("kafka_ssl_cafile") == "other":
        overrides = {**overrides, "kafka_ssl_cafile": pki.other_ca}
    settings = ssl_settings(tls_kafka, pki, **overrides)
    with pytest.raises((KafkaConnectionError, TimeoutError)):
        await ensure_topics(settings.kafka_servers, [TOPIC.value], timeout_s=5)
    assert tls_kafka.listener.tls_sessions == 0, f"{client} got a TLS session"
