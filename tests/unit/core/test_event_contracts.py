"""The event contracts: envelope roundtrip, strict decoding, docs generated from the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet_core import event_docs
from fleet_core.events import (
    PAYLOADS,
    EventDecodeError,
    RetrainRequested,
    Topic,
    make_event,
    parse_event,
)
from fleet_core.log import bind_request_id, clear_request_id

DOCS = Path(__file__).resolve().parents[3] / "docs"


def test_every_topic_has_a_payload_and_a_dead_letter_twin() -> None:
    assert set(PAYLOADS) == set(Topic)
    assert Topic.MODEL_REGISTERED.dlq == "model.registered.dlq"


def test_an_event_roundtrips_and_carries_the_request_id() -> None:
    bind_request_id("req-1")
    try:
        event = make_event(
            Topic.RETRAIN_REQUESTED,
            RetrainRequested(model="m", reason="manual", requested_by="a"),
            source="/test",
        )
    finally:
        clear_request_id()
    parsed = parse_event(Topic.RETRAIN_REQUESTED, event.to_bytes())
    assert parsed.id == event.id and parsed.subject == "m" and parsed.requestid == "req-1"
    assert parsed.type == "io.modelfleet.retrain.requested.v1"
    assert parsed.data == event.data


def test_decoding_refuses_wrong_type_bad_payload_and_garbage() -> None:
    event = make_event(
        Topic.RETRAIN_REQUESTED, RetrainRequested(model="m", reason="manual", requested_by="a"), source="/t"
    )
    misplaced = event.model_dump(mode="json")
    misplaced["type"] = Topic.DRIFT_DETECTED.event_type
    with pytest.raises(EventDecodeError, match="does not belong"):
        parse_event(Topic.RETRAIN_REQUESTED, misplaced)
    bad = event.model_dump(mode="json")
    bad["data"]["reason"] = "because"
    with pytest.raises(EventDecodeError):
        parse_event(Topic.RETRAIN_REQUESTED, bad)
    with pytest.raises(EventDecodeError):
        parse_event(Topic.RETRAIN_REQUESTED, b"{not json")


def test_make_event_refuses_a_payload_of_another_topic() -> None:
    with pytest.raises(TypeError):
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
