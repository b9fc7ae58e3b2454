"""``python -m fleet_core.topics`` on a real broker: creates the whole catalogue with its dead-letter
topics once, and is a no-op after that, as an initContainer that runs before every start must be."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from fleet_core.broker import all_topics
from fleet_sdk.embedded_broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def empty_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    broker = EmbeddedBroker(log_file=tmp_path / "tansu.log")
    broker.start()
    yield broker
    broker.stop()


def topics_command(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    # As in its container: production mode, and no FLEET_JWT_SECRET, which this job does not need.
    return subprocess.run(
        [sys.executable, "-m", "fleet_core.topics", *args],
        env={**os.environ, "FLEET_KAFKA_BOOTSTRAP": bootstrap, "FLEET_MODE": "production"},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def describe(bootstrap: str) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(all_topics())}
    finally:
        await admin.close()


def test_creates_the_catalogue_once_then_leaves_it_alone(empty_broker: EmbeddedBroker) -> None:
    first = topics_command(empty_broker.bootstrap, "--partitions", "4")
    assert first.returncode == 0, first.stderr
    assert f"{len(all_topics())} created" in first.stdout

    partitions = asyncio.run(describe(empty_broker.bootstrap))
    assert set(partitions) == set(all_topics())
    assert {n for t, n in partitions.items() if not t.endswith(".dlq")} == {4}
    assert {n for t, n in partitions.items() if t.endswith(".dlq")} == {1}

    again = topics_command(empty_broker.bootstrap)
    assert again.returncode == 0, again.stderr
    assert f"0 created, {len(all_topics())} already there" in again.stdout


def test_an_unreachable_broker_fails_with_a_reason() -> None:
    result = topics_command(f"127.0.0.1:{free_port()}", "--timeout", "3")
    assert result.returncode == 1
    assert "cannot create topics" in result.stderr


def test_a_bad_partition_count_is_refused_before_connecting() -> None:
    result = topics_command(f"127.0.0.1:{free_port()}", "--partitions", "0")
    assert result.returncode == 2
    assert "--partitions" in result.stderr and "at least 1" in result.stderr
