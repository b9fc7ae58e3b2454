"""``fleet_core.topics.ACCESS``, the least Kafka access of each service principal (the ACLs of
docs/operations.md and of compose's `kafka-principals` job), is what the services really do: each
consumer subscribes to exactly the topics and group it lists, and every event the services publish
goes to a topic their principal may write."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest

from fleet_core.events import Topic
from fleet_core.topics import ACCESS

REPO = Path(__file__).resolve().parents[3]
CONSUMERS = {
    "registry": "registry_consumer",
    "deployer": "deployer_consumer",
    "monitor": "monitor_consumer",
    "retrainer": "retrainer_consumer",
}


@pytest.mark.parametrize("service", sorted(CONSUMERS))
def test_each_consumer_reads_exactly_the_topics_and_group_of_its_principal(service: str) -> None:
    build: Any = getattr(importlib.import_module(f"fleet_{service}.events"), CONSUMERS[service])
    required = [
        p
        for p in inspect.signature(build).parameters.values()
        if p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty
    ]
    # Built, not started: its handlers' topics and group; collaborators are not called.
    consumer = build("127.0.0.1:9", *[None] * (len(required) - 1))
    assert set(consumer.handlers) == set(ACCESS[service].consumes)
    assert consumer.consumer_group == ACCESS[service].group


def test_the_gateway_reads_only_rollout_updates_without_a_group() -> None:
    source = (REPO / "services/gateway/src/fleet_gateway/events.py").read_text()
    assert "Topic.ROLLOUT_UPDATED.value" in source and "group_id=None" in source
    assert ACCESS["gateway"].consumes == {Topic.ROLLOUT_UPDATED} and ACCESS["gateway"].group is None


def _published_topics(service: str) -> set[Topic]:
    """Topics a service's code stages or sends: ``Topic.X`` passed to publish/enqueue/make_event or
    to a notifier that opens an alert (the monitor's ``_open``)."""
    publishers = {"publish", "enqueue", "make_event", "_open"}
    found: set[Topic] = set()
    for path in (REPO / "services" / service / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if name in publishers:
                    for arg in node.args:
                        text = ast.unparse(arg)
                        if text.startswith("Topic."):
                            found.add(Topic[text.removeprefix("Topic.")])
            # The audit sink of a service with an outbox stages audit.recorded (fleet_core.outbox).
            if isinstance(node, ast.Attribute) and node.attr == "record_audit":
                found.add(Topic.AUDIT_RECORDED)
    return found


@pytest.mark.parametrize("service", sorted(ACCESS))
def test_a_principal_may_write_exactly_the_topics_its_service_publishes_to(service: str) -> None:
    """No missing grant (its events would be parked), no grant to spare (least privilege)."""
    assert _published_topics(service) == ACCESS[service].produces
