"""Create ModelFleet's Kafka topics: every topic of the event catalogue and its ``.dlq``.

Idempotent (existing topics are left alone), so it runs before each start of the registry in
Kubernetes and as a one-shot job in docker-compose; brokers can keep auto-creation off.

    python -m fleet_core.topics [--partitions 6] [--replication 3]

The bootstrap servers come from ``FLEET_KAFKA_BOOTSTRAP``, the TLS/SASL settings from the other
``FLEET_KAFKA_*`` variables (docs/operations.md). Events are keyed by model, so the
partition count bounds how many instances of a consuming service share the work; it can be raised
later (``kafka-topics --alter``), at the price of moving some models to another partition once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from fleet_core.broker import all_topics, ensure_topics
from fleet_core.events import Topic
from fleet_core.settings import KafkaSettings


@dataclass(frozen=True)
class Access:
    """What one service principal does on Kafka: the topics it publishes to, and the topics it
    reads (as consumer ``group``, or without a group), whose ``.dlq`` it then also publishes to."""

    produces: frozenset[Topic]
    consumes: frozenset[Topic] = frozenset()
    group: str | None = None


def _topics(*topics: Topic) -> frozenset[Topic]:
    return frozenset(topics)


WEBHOOK_TOPICS = (
    Topic.MODEL_REGISTERED,
    Topic.VERSION_CHECKED,
    Topic.ROLLOUT_UPDATED,
    Topic.ROLLOUT_ANALYSIS,
    Topic.DRIFT_DETECTED,
    Topic.ANOMALY_DETECTED,
    Topic.RETRAIN_COMPLETED,
    Topic.DATASET_UPDATED,
)
"""What a webhook may subscribe to (``fleet_registry.webhooks``): the events about a team's models
and datasets. Not the per-request ``inference.*`` streams (read those from Kafka), nor requests
and audit entries."""

ACCESS: dict[str, Access] = {
    # The registry keeps the platform's audit log (every service's audit.recorded) and delivers
    # webhooks (the events about a team's models and datasets).
    "registry": Access(
        produces=_topics(Topic.MODEL_REGISTERED, Topic.DATASET_UPDATED, Topic.VERSION_CHECKED),
        consumes=_topics(Topic.AUDIT_RECORDED, *WEBHOOK_TOPICS),
        group="registry",
    ),
    "deployer": Access(
        produces=_topics(Topic.ROLLOUT_UPDATED, Topic.AUDIT_RECORDED),
        consumes=_topics(
            Topic.MODEL_REGISTERED,
            Topic.VERSION_CHECKED,
            Topic.ROLLOUT_REQUESTED,
            Topic.INFERENCE_LOGGED,
            Topic.ROLLOUT_ANALYSIS,
            Topic.ANOMALY_DETECTED,
        ),
        group="deployer",
    ),
    # The gateway follows rollout.updated without a group (each instance reads every partition).
    "gateway": Access(
        produces=_topics(
            Topic.INFERENCE_LOGGED, Topic.INFERENCE_FEEDBACK, Topic.OUTCOME_RECORDED, Topic.AUDIT_RECORDED
        ),
        consumes=_topics(Topic.ROLLOUT_UPDATED),
    ),
    "monitor": Access(
        produces=_topics(
            Topic.ROLLOUT_ANALYSIS, Topic.DRIFT_DETECTED, Topic.ANOMALY_DETECTED, Topic.AUDIT_RECORDED
        ),
        consumes=_topics(
            Topic.INFERENCE_LOGGED,
            Topic.INFERENCE_FEEDBACK,
            Topic.MODEL_REGISTERED,
            Topic.ROLLOUT_UPDATED,
            Topic.RETRAIN_COMPLETED,
            Topic.VERSION_CHECKED,
            Topic.OUTCOME_RECORDED,
        ),
        group="monitor",
    ),
    "retrainer": Access(
        produces=_topics(Topic.ROLLOUT_REQUESTED, Topic.RETRAIN_COMPLETED, Topic.AUDIT_RECORDED),
        # model.registered: a gated version's checks run here (fleet_retrainer.checks).
        consumes=_topics(
            Topic.DRIFT_DETECTED, Topic.RETRAIN_REQUESTED, Topic.DATASET_UPDATED, Topic.MODEL_REGISTERED
        ),
        group="retrainer",
    ),
}
"""Each service's Kafka principal and the least access it needs: the ACLs of docs/operations.md
and of the compose stack's `kafka-principals` job are this table."""


def positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fleet_core.topics", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--partitions",
        type=positive,
        default=int(os.environ.get("FLEET_TOPIC_PARTITIONS", "3")),
        help="partitions of each event topic (dead-letter topics get 1); env FLEET_TOPIC_PARTITIONS",
    )
    parser.add_argument(
        "--replication",
        type=positive,
        default=int(os.environ.get("FLEET_TOPIC_REPLICATION", "1")),
        help="replication factor of every topic; env FLEET_TOPIC_REPLICATION",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the brokers")
    args = parser.parse_args(argv)
    # Only the Kafka settings: this job holds no other secret (no FLEET_JWT_SECRET), so the full
    # settings, which refuse to load in production mode without one, are not read.
    try:
        bootstrap = KafkaSettings().kafka_servers
    except ValueError as exc:
        print(f"topics: invalid Kafka settings: {exc}", file=sys.stderr)
        return 2
    try:
        created = asyncio.run(
            ensure_topics(
                bootstrap, partitions=args.partitions, replication=args.replication, timeout_s=args.timeout
            )
        )
    except Exception as exc:
        print(
            f"topics: cannot create topics on {','.join(bootstrap)}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        return 1
    print(f"topics: {len(created)} created, {len(all_topics()) - len(created)} already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
