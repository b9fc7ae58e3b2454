"""Reading what landed on a topic, with a deadline."""

from __future__ import annotations

import asyncio
import time
import uuid

from aiokafka import AIOKafkaConsumer, ConsumerRecord


async def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout_s: float = 30.0, settle_s: float = 1.5
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` from the start: waits until ``expect`` arrived (or the deadline),
    then ``settle_s`` more, so that an unexpected extra record would be seen too."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout_s
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                records.extend(recs)
            if len(records) >= expect and settle_until is None:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                break
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return records
