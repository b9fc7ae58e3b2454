"""Kafka over TLS and SASL with the platform's own clients, built from ``FLEET_KAFKA_*`` settings.

The embedded broker (Tansu 0.6) cannot serve TLS itself: its ``--cert`` and ``--key`` flags refuse
to be given together. So the broker listens on loopback behind a front door that terminates TLS,
requiring a client certificate (mutual TLS), and the broker advertises the door's address; every
byte a client exchanges with Kafka crosses it. The certificates are made here, with
``cryptography``. Shown: the outbox relay, topic creation, the FastStream broker and the batch
consumer round-trip events over SSL; a PLAINTEXT client, a client without a certificate and a
client that does not trust the broker's CA are refused.

SASL likewise: Tansu 0.6 requires authentication with ``--authentication`` but creates users only
through a broker that does not require it, in memory, so it can never authenticate anyone. The
front door answers the Kafka protocol's SaslHandshake/SaslAuthenticate itself (PLAIN) before it
forwards anything, as a SASL listener does; the clients' SCRAM arguments are checked in
tests/unit/core/test_kafka_settings.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import ssl
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.protocol.admin import (
    SaslAuthenticateResponse_v0,
    SaslAuthenticateResponse_v1,
    SaslHandShakeResponse_v1,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import MetaData

from fleet_core.broker import BatchConsumer, all_topics, ensure_topics, make_broker
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


# --------------------------------------------------------------------------- the broker's front door

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM = 58, 33


class FrontDoor:
    """What a secured Kafka listener does, in front of the broker's loopback port: terminates
    (mutual) TLS when given a context, and, given users, requires SASL/PLAIN before any request but
    ApiVersions (the Kafka protocol's SaslHandshake and SaslAuthenticate, answered here); then it
    forwards the bytes as they are. A client that sends anything else first is dropped."""

    def __init__(
        self,
        port: int,
        upstream_port: int,
        tls: ssl.SSLContext | None = None,
        sasl_users: dict[str, str] | None = None,
    ) -> None:
        self.port, self.upstream_port, self.tls, self.sasl_users = port, upstream_port, tls, sasl_users
        self.server: asyncio.Server | None = None
        self.tls_sessions = 0
        self.authenticated: list[str] = []
        self.refusals: list[str] = []
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, ssl=self.tls)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.tls is not None:
            self.tls_sessions += 1  # only after a completed handshake with a trusted client certificate
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        try:
            if self.sasl_users is not None and not await self._authenticate(
                reader, writer, up_reader, up_writer
            ):
                return
            pipes = [
                asyncio.create_task(self._pipe(reader, up_writer)),
                asyncio.create_task(self._pipe(up_reader, writer)),
            ]
            self._pipes.update(pipes)
            await asyncio.gather(*pipes, return_exceptions=True)
            self._pipes.difference_update(pipes)
        finally:
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> bool:
        assert self.sasl_users is not None
        while True:
            frame = await self._frame(reader)
            if frame is None:
                return False
            api_key, api_version, correlation = struct.unpack_from(">hhi", frame)
            (client_id_length,) = struct.unpack_from(">h", frame, 8)
            body = frame[10 + max(client_id_length, 0) :]  # request header v1: these APIs are not flexible
            if api_key == API_VERSIONS:  # allowed before authentication, answered by the broker
                up_writer.write(struct.pack(">i", len(frame)) + frame)
                await up_writer.drain()
                answer = await self._frame(up_reader)
                if answer is None:
                    return False
                writer.write(struct.pack(">i", len(answer)) + answer)
                await writer.drain()
            elif api_key == SASL_HANDSHAKE:
                (length,) = struct.unpack_from(">h", body)
                mechanism = body[2 : 2 + length].decode()
                code = 0 if mechanism == "PLAIN" else UNSUPPORTED_SASL_MECHANISM
                await self._reply(writer, correlation, SaslHandShakeResponse_v1(code, ["PLAIN"]).encode())
                if code:
                    self.refusals.append(f"mechanism {mechanism}")
                    return False
            elif api_key == SASL_AUTHENTICATE:
                (length,) = struct.unpack_from(">i", body)
                _, user, password = body[4 : 4 + length].split(b"\0")
                ok = self.sasl_users.get(user.decode()) == password.decode()
                fields: dict[str, Any] = {
                    "error_code": 0 if ok else SASL_AUTHENTICATION_FAILED,
                    "error_message": None if ok else "Authentication failed: invalid username or password",
                    "sasl_auth_bytes": b"",
                }
                if api_version >= 1:
                    response = SaslAuthenticateResponse_v1(**fields, session_lifetime_ms=0)
                else:
                    response = SaslAuthenticateResponse_v0(**fields)
                await self._reply(writer, correlation, response.encode())
                if ok:
                    self.authenticated.append(user.decode())
                    return True
                self.refusals.append(f"bad credentials for {user.decode()}")
                return False
            else:  # a request before authenticating: a PLAINTEXT client
                self.refusals.append("request before authentication")
                return False

    @staticmethod
    async def _frame(reader: asyncio.StreamReader) -> bytes | None:
        try:
            (size,) = struct.unpack(">i", await reader.readexactly(4))
            return await reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return None

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, correlation: int, body: bytes) -> None:
        writer.write(struct.pack(">ii", len(body) + 4, correlation) + body)  # response header v0
        await writer.drain()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # A peer hanging up (plainly or mid-TLS) ends the pipe; the test asserts on what
            # reached the broker, not on how a connection closed.
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


@dataclass
class SecuredKafka:
    bootstrap: str
    listener: FrontDoor


@pytest.fixture
def hidden_broker(tmp_path: Path) -> Iterator[tuple[EmbeddedBroker, int]]:
    """Tansu on a loopback port, advertising the front door's port to clients."""
    door_port = free_port()
    broker = EmbeddedBroker(log_file=tmp_path / "tansu.log", advertised=f"127.0.0.1:{door_port}")
    broker.start()
    yield broker, door_port
    broker.stop(timeout_s=0.5)


def server_tls(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    context.load_cert_chain(str(pki.server_cert), str(pki.server_key))
    context.verify_mode = ssl.CERT_REQUIRED  # mutual TLS: a client without our CA's certificate is refused
    return context


@asynccontextmanager
async def front_door(
    hidden_broker: tuple[EmbeddedBroker, int], tls: ssl.SSLContext | None, users: dict[str, str] | None
) -> AsyncIterator[SecuredKafka]:
    broker, port = hidden_broker
    listener = FrontDoor(port, broker.port, tls, users)
    await listener.start()
    try:
        yield SecuredKafka(f"127.0.0.1:{port}", listener)
    finally:
        await listener.stop()


@pytest.fixture
async def tls_kafka(hidden_broker: tuple[EmbeddedBroker, int], pki: Pki) -> AsyncIterator[SecuredKafka]:
    async with front_door(hidden_broker, server_tls(pki), None) as kafka:
        yield kafka


USERS = {"registry": "registry-kafka-password-0123456789"}


@pytest.fixture
async def sasl_ssl_kafka(hidden_broker: tuple[EmbeddedBroker, int], pki: Pki) -> AsyncIterator[SecuredKafka]:
    async with front_door(hidden_broker, server_tls(pki), USERS) as kafka:
        yield kafka


@pytest.fixture
async def sasl_kafka(hidden_broker: tuple[EmbeddedBroker, int]) -> AsyncIterator[SecuredKafka]:
    async with front_door(hidden_broker, None, USERS) as kafka:
        yield kafka


def ssl_settings(kafka: SecuredKafka, pki: Pki, **overrides: Any) -> FleetSettings:
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


async def round_trip(settings: FleetSettings, tmp_path: Path) -> None:
    """Topic creation (admin client), the outbox relay and the FastStream broker publishing, and the
    batch consumer reading both events back: every kind of client the services build, from
    ``settings.kafka_servers`` as every service hands it to them."""
    servers = settings.kafka_servers
    created = await ensure_topics(servers, [TOPIC.value, TOPIC.dlq], timeout_s=20)
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

    consumer = BatchConsumer(servers, {TOPIC: handle}, consumer="security-test")
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


async def test_the_platforms_clients_round_trip_events_over_mutual_tls(
    tls_kafka: SecuredKafka, pki: Pki, tmp_path: Path
) -> None:
    await round_trip(ssl_settings(tls_kafka, pki), tmp_path)
    assert tls_kafka.listener.tls_sessions > 0


def sasl_settings(kafka: SecuredKafka, pki: Pki | None, **overrides: Any) -> FleetSettings:
    values: dict[str, Any] = {
        "kafka_bootstrap": kafka.bootstrap,
        "kafka_security_protocol": "SASL_SSL" if pki else "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": "registry",
        "kafka_sasl_password": USERS["registry"],
    }
    if pki:
        values |= {
            "kafka_ssl_cafile": pki.ca,
            "kafka_ssl_certfile": pki.client_cert,
            "kafka_ssl_keyfile": pki.client_key,
        }
    return FleetSettings(**(values | overrides))


async def test_the_platforms_clients_round_trip_events_with_sasl_over_tls(
    sasl_ssl_kafka: SecuredKafka, pki: Pki, tmp_path: Path
) -> None:
    await round_trip(sasl_settings(sasl_ssl_kafka, pki), tmp_path)
    door = sasl_ssl_kafka.listener
    assert door.tls_sessions > 0 and door.authenticated and set(door.authenticated) == {"registry"}
    assert door.refusals == []  # every connection of every client authenticated


async def test_the_platforms_clients_round_trip_events_with_sasl(
    sasl_kafka: SecuredKafka, tmp_path: Path
) -> None:
    await round_trip(sasl_settings(sasl_kafka, None), tmp_path)
    assert set(sasl_kafka.listener.authenticated) == {"registry"} and sasl_kafka.listener.refusals == []


@pytest.mark.parametrize(
    ("client", "overrides", "reason"),
    [
        (
            "a PLAINTEXT client",
            {
                "kafka_security_protocol": "PLAINTEXT",
                "kafka_sasl_mechanism": None,
                "kafka_sasl_username": None,
                "kafka_sasl_password": None,
            },
            "request before authentication",
        ),
        ("a wrong password", {"kafka_sasl_password": "not-the-password"}, "bad credentials for registry"),
        (
            "a mechanism the broker does not offer",
            {"kafka_sasl_mechanism": "SCRAM-SHA-512"},
            "mechanism SCRAM-SHA-512",
        ),
    ],
)
async def test_a_client_without_the_right_sasl_settings_is_refused(
    sasl_kafka: SecuredKafka, client: str, overrides: dict[str, Any], reason: str
) -> None:
    settings = sasl_settings(sasl_kafka, None, **overrides)
    # aiokafka reports a refused bootstrap connection as a connection error, whatever the cause.
    with pytest.raises((KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError)):
        await ensure_topics(settings.kafka_servers, [TOPIC.value], timeout_s=5)
    assert sasl_kafka.listener.authenticated == [], f"{client} was let in"
    assert reason in sasl_kafka.listener.refusals


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
    tls_kafka: SecuredKafka, pki: Pki, client: str, overrides: dict[str, Any]
) -> None:
    if overrides.get("kafka_ssl_cafile") == "other":
        overrides = {**overrides, "kafka_ssl_cafile": pki.other_ca}
    settings = ssl_settings(tls_kafka, pki, **overrides)
    with pytest.raises((KafkaConnectionError, TimeoutError)):
        await ensure_topics(settings.kafka_servers, [TOPIC.value], timeout_s=5)
    assert tls_kafka.listener.tls_sessions == 0, f"{client} got a TLS session"


async def test_the_topic_job_authenticates_with_its_environment(sasl_kafka: SecuredKafka) -> None:
    """``python -m fleet_core.topics`` as compose runs it: SASL settings from FLEET_KAFKA_*, no JWT
    secret; refused without them."""

    async def topics_job(**env: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "fleet_core.topics",
            "--timeout",
            "10",
            env={
                **os.environ,
                "FLEET_MODE": "production",
                "FLEET_KAFKA_BOOTSTRAP": sasl_kafka.bootstrap,
                **env,
            },
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), 60)
        return process.returncode or 0, out.decode()

    code, out = await topics_job()
    assert code == 1 and "cannot create topics" in out
    code, out = await topics_job(
        FLEET_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
        FLEET_KAFKA_SASL_MECHANISM="PLAIN",
        FLEET_KAFKA_SASL_USERNAME="registry",
        FLEET_KAFKA_SASL_PASSWORD=USERS["registry"],
    )
    assert code == 0, out
    assert f"{len(all_topics())} created" in out
    code, out = await topics_job(FLEET_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT")
    assert code == 2 and "FLEET_KAFKA_SASL_MECHANISM" in out  # a misconfiguration, said at once
