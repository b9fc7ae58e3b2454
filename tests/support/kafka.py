"""Reading what landed on a topic, with a deadline.

The reader assigns itself every partition instead of joining a consumer group, so it starts at
once (a Tansu group join takes ~5 s) and sees the whole topic from its first offset.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition


async def _partitions(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> list[TopicPartition]:
    while True:
        await consumer.topics()  # refreshes the metadata
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return [TopicPartition(topic, p) for p in sorted(partitions)]
        if time.monotonic() >= deadline:
            raise AssertionError(f"topic {topic!r} does not exist")
        await asyncio.sleep(0.1)


async def read_topic(
    bootstrap: str, topic: str, *, expect: int, timeout_s: float = 30.0, settle_s: float = 0.5
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on ``topic`` from its start: waits until ``expect`` arrived (or the deadline),
    then ``settle_s`` more, and reads up to the end offsets of every partition, so an unexpected
    extra record would be seen too. Order is per partition."""
    deadline = time.monotonic() + timeout_s
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        partitions = await _partitions(consumer, topic, deadline)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        settle_until: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(*partitions, timeout_ms=100)
            for recs in batch.values():
                records.extend(recs)
            if len(records) >= expect and settle_until is None:
                settle_until = time.monotonic() + settle_s
            if settle_until is not None and time.monotonic() >= settle_until:
                end = await consumer.end_offsets(partitions)
                positions = [await consumer.position(tp) for tp in partitions]
                if all(pos >= end[tp] for pos, tp in zip(positions, partitions, strict=True)):
                    break
    finally:
        await consumer.stop()
    return records


async def topic_size(bootstrap: str, topic: str, *, timeout_s: float = 10.0) -> int:
    """How many records ``topic`` holds now (end minus beginning offsets of every partition)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = await _partitions(consumer, topic, time.monotonic() + timeout_s)
        end = await consumer.end_offsets(partitions)
        begin = await consumer.beginning_offsets(partitions)
    finally:
        await consumer.stop()
    return sum(end[tp] - begin[tp] for tp in partitions)
