"""The event contracts: envelope roundtrip, strict decoding, docs generated from the code."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from fleet_core import event_docs
from fleet_core.events import (
    PAYLOADS,
    CloudEvent,
    EventDecodeError,
    RetrainRequested,
    Topic,
    make_event,
    parse_event,
)
from fleet_core.log import bind_request_id, clear_request_id

DOCS = Path(__file__).resolve().parents[3] / "docs"


def retrain_event() -> CloudEvent[Any]:
    return make_event(
        Topic.RETRAIN_REQUESTED,
        RetrainRequested(model="churn", reason="drift", trigger_event_id="d-1", requested_by="monitor"),
        source="/monitor",
    )


def test_every_topic_has_a_payload_and_a_dead_letter_twin() -> None:
    assert set(PAYLOADS) == set(Topic)
    assert all(issubclass(p, BaseModel) for p in PAYLOADS.values())
    assert len(set(PAYLOADS.values())) == len(Topic)  # no payload type serves two topics
    for topic in Topic:
        assert topic.dlq == f"{topic.value}.dlq"
        assert topic.event_type == f"io.modelfleet.{topic.value}.v1"


def test_an_event_roundtrips_through_its_bytes() -> None:
    event = retrain_event()
    parsed = parse_event(Topic.RETRAIN_REQUESTED, event.to_bytes())

    assert parsed == event
    assert isinstance(parsed.data, RetrainRequested)
    assert parsed.specversion == "1.0"
    assert parsed.type == "io.modelfleet.retrain.requested.v1"
    assert parsed.subject == "churn"  # the Kafka key: one model's events stay ordered
    assert parsed.dataschema and parsed.dataschema.endswith("/retrain.requested/v1")
    assert parsed.time.tzinfo is not None


def test_an_event_is_structured_mode_cloudevents_json() -> None:
    body = json.loads(retrain_event().to_bytes())
    assert {"specversion", "id", "type", "source", "time", "subject", "datacontenttype", "data"} <= set(body)
    assert body["datacontenttype"] == "application/json"
    assert body["data"]["model"] == "churn"
    assert "requestid" not in body  # absent, not null, outside a request


def test_an_event_made_during_a_request_carries_its_request_id() -> None:
    bind_request_id("req-1")
    try:
        event = retrain_event()
    finally:
        clear_request_id()
    assert parse_event(Topic.RETRAIN_REQUESTED, event.to_bytes()).requestid == "req-1"


def test_each_event_gets_its_own_id() -> None:
    assert retrain_event().id != retrain_event().id


def test_other_systems_may_add_extension_attributes() -> None:
    body = json.loads(retrain_event().to_bytes())
    body["traceparent"] = "00-abc-def-01"
    assert parse_event(Topic.RETRAIN_REQUESTED, body).data.model == "churn"


def _with(change: Callable[[dict[str, Any]], object]) -> bytes:
    body = json.loads(retrain_event().to_bytes())
    change(body)
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        pytest.param(_with(lambda b: b.update(type="io.modelfleet.drift.detected.v1")), "belong", id="type"),
        pytest.param(_with(lambda b: b["data"].update(reason="because")), "data.reason", id="bad-payload"),
        pytest.param(_with(lambda b: b["data"].pop("model")), "data.model", id="missing-field"),
        pytest.param(_with(lambda b: b["data"].update(colour="red")), "data.colour", id="unknown-field"),
        pytest.param(_with(lambda b: b.pop("id")), "id", id="no-id"),
        pytest.param(_with(lambda b: b.update(specversion="0.3")), "specversion", id="other-specversion"),
        pytest.param(b"{not json", "json", id="not-json"),
        pytest.param(b"", "json", id="empty"),
    ],
)
def test_decoding_refuses_what_is_not_an_event_of_the_topic(raw: bytes, says: str) -> None:
    with pytest.raises(EventDecodeError, match=f"(?i){says}"):
        parse_event(Topic.RETRAIN_REQUESTED, raw)


def test_decoding_a_dict_applies_the_same_rules() -> None:
    body = retrain_event().model_dump(mode="json")
    assert parse_event(Topic.RETRAIN_REQUESTED, body).data.model == "churn"
    body["type"] = Topic.MODEL_REGISTERED.event_type
    with pytest.raises(EventDecodeError):
        parse_event(Topic.RETRAIN_REQUESTED, body)


def test_an_event_decode_error_is_a_value_error() -> None:
    # Consumers treat it as a poison message: never retried, straight to the DLQ.
    assert issubclass(EventDecodeError, ValueError)


def test_make_event_refuses_a_payload_of_another_topic() -> None:
    with pytest.raises(TypeError, match="ModelRegistered"):
        make_event(
            Topic.MODEL_REGISTERED,
            RetrainRequested(model="m", reason="manual", requested_by="a"),
            source="/t",
        )


def test_event_docs_are_generated_from_the_current_code() -> None:
    assert event_docs.main(["--docs", str(DOCS), "--check"]) == 0, (
        "run `uv run python -m fleet_core.event_docs`"
    )
    text = (DOCS / "events.md").read_text()
    assert all(f"### `{t.value}`" in text for t in Topic)


def _refs(node: Any) -> list[str]:
    """Every ``$ref`` in a JSON document."""
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_the_asyncapi_document_is_valid_asyncapi_3_and_describes_every_topic() -> None:
    import jsonschema

    doc = json.loads((DOCS / "asyncapi.json").read_text())
    spec = json.loads(
        (Path(__file__).resolve().parents[2] / "support/schemas/asyncapi-3.0.0.json").read_text()
    )
    errors = [f"{list(e.path)}: {e.message[:200]}" for e in jsonschema.Draft7Validator(spec).iter_errors(doc)]
    assert errors == []
    for ref in _refs(doc):  # the meta-schema does not follow references: every one must land
        node: Any = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in node, f"{ref} does not resolve"
            node = node[part]
    addresses = {c["address"] for c in doc["channels"].values()}
    assert addresses == {t.value for t in Topic} | {t.dlq for t in Topic}
    actions = sorted(o["action"] for o in doc["operations"].values())
    assert actions == ["receive"] * len(Topic) + ["send"] * len(Topic)

    # A real event validates against its message's schema, and a broken one does not.
    message = doc["components"]["messages"][RetrainRequested.__name__]["payload"]
    validator = jsonschema.Draft202012Validator({**doc, "$ref": message["schema"]["$ref"]})
    event = json.loads(retrain_event().model_dump_json(exclude_none=True))
    validator.validate(event)
    del event["data"]["model"]
    with pytest.raises(jsonschema.ValidationError, match="'model' is a required property"):
        validator.validate(event)
