"""The registry stores no raw PII: at registration, the values of signature fields marked ``pii`` in
the reference profile and the example input are replaced by the gateway's keyed hash (or dropped),
before the version is stored or announced in ``model.registered``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from fleet_core.privacy import PiiHasher
from fleet_core.schemas import FieldSpec
from fleet_registry.app import create_app
from fleet_registry.models import MESSAGING
from fleet_registry.settings import RegistrySettings
from support.registry import RegistryHarness, running_registry, skops_model, upload_version, version_metadata

SALT = "a-production-like-salt-0123456789"
EMAIL = "jane.doe@example.com"
SIGNATURE = {
    "inputs": [
        {"name": "x0", "type": "float"},
        {"name": "email", "type": "string", "pii": True, "nullable": True},
        {
            "name": "segment",
            "type": "category",
            "categories": ["gold", "silver"],
            "pii": True,
            "nullable": True,
        },
        {"name": "age", "type": "int", "pii": True, "nullable": True},
    ],
    "outputs": [{"name": "label", "type": "int"}],
}
HISTOGRAM = {"edges": [0.0, 50.0, 100.0], "counts": [3, 4]}
PROFILE = {
    "row_count": 7,
    "features": {
        "x0": {
            "kind": "numeric",
            "count": 7,
            "missing": 0,
            "mean": 0.5,
            "std": 1.0,
            "minimum": -2.0,
            "maximum": 2.0,
            "quantiles": {"0.5": 0.4},
            "histogram": {"edges": [-2.0, 0.0, 2.0], "counts": [3, 4]},
            "sample": [0.1, 0.2],
        },
        "email": {"kind": "categorical", "count": 7, "frequencies": {EMAIL: 2, "__other__": 5}},
        "segment": {"kind": "categorical", "count": 7, "frequencies": {"gold": 3, "silver": 4}},
        "age": {
            "kind": "numeric",
            "count": 7,
            "mean": 41.0,
            "std": 9.0,
            "minimum": 23.0,
            "maximum": 67.0,
            "quantiles": {"0.5": 38.0},
            "histogram": HISTOGRAM,
            "sample": [23.0, 38.0, 67.0],
        },
    },
}


@pytest.fixture
async def registry(tmp_path: Path):
    """The registry, keyed with a known salt, with one empty model, `churn`."""
    async with running_registry(tmp_path, pii_salt=SALT) as h:
        r = await h.client.post("/v1/models", json={"name": "churn", "team": "growth"}, headers=h.auth())
        assert r.status_code == 201, r.text
        yield h


async def _register(h: RegistryHarness, path: str, **meta: Any) -> dict[str, Any]:
    fields = {"signature": SIGNATURE, "reference_profile": PROFILE, **meta}
    if path == "upload":
        r = await upload_version(h, "churn", h.auth(), **fields)
    else:
        artifact = skops_model(5)
        target = h.settings.home / "artifacts" / "jobs" / "run-1" / "model.skops"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(artifact)
        body = {
            **version_metadata(**fields),
            "artifact_uri": target.as_uri(),
            "sha256": hashlib.sha256(artifact).hexdigest(),
        }
        r = await h.client.post("/v1/models/churn/versions/from-uri", json=body, headers=h.auth())
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _stored_and_announced(h: RegistryHarness, registered: dict[str, Any]) -> tuple[str, str]:
    """The version as GET returns it, and the staged ``model.registered`` event, as JSON text."""
    got = await h.client.get(f"/v1/models/churn/versions/{registered['version']}", headers=h.auth())
    assert got.status_code == 200, got.text
    async with h.app.state.db.sessions() as s:
        payload = await s.scalar(
            select(MESSAGING.outbox.c.payload).where(MESSAGING.outbox.c.event_id == registered["event_id"])
        )
    assert payload is not None, "model.registered is staged in the outbox"
    return got.text, payload.decode()


def _without_signature(text: str) -> str:
    """The JSON text without the signature, whose categories the gateway validates raw values against."""
    document = json.loads(text)
    (document.get("data") or document).pop("signature")
    return json.dumps(document)


@pytest.mark.parametrize("path", ["upload", "from-uri"])
async def test_pii_values_of_profile_and_example_are_hashed_before_storing_or_announcing(
    registry: RegistryHarness, path: str
) -> None:
    registered = await _register(registry, path, example_input=[{"x0": 0.3, "email": EMAIL}])
    hasher = PiiHasher(SALT)
    segment = FieldSpec.model_validate(SIGNATURE["inputs"][2])  # type: ignore[index]
    for text in await _stored_and_announced(registry, registered):
        assert EMAIL not in text, "a raw email in the profile or the example input"
        assert "jane" not in text.lower()
        hidden = _without_signature(text)
        assert '"gold"' not in hidden and '"silver"' not in hidden, "a raw PII category"
        document = json.loads(text)
        version = document.get("data") or document
        features = version["reference_profile"]["features"]
        assert features["segment"]["frequencies"] == {
            hasher.category(segment, "gold"): 3,
            hasher.category(segment, "silver"): 4,
        }
        assert features["email"]["frequencies"] == {hasher.hash(EMAIL): 2, "__other__": 5}
        assert "age" not in features, "a hashed number has no order: the numeric PII profile is dropped"
        assert features["x0"] == PROFILE["features"]["x0"], "non-PII features are kept as given"  # type: ignore[index]
        assert version["example_input"] == [{"x0": 0.3, "email": hasher.hash(EMAIL)}]


@pytest.mark.parametrize(
    "row",
    [{"x0": 0.3, "email": EMAIL, "segment": "gold"}, {"x0": 0.3, "age": 33}],
    ids=["category", "number"],
)
async def test_an_example_input_with_a_non_string_pii_value_is_dropped(
    registry: RegistryHarness, row: dict[str, Any]
) -> None:
    # A hashed category or number would no longer validate against the signature (nor feed the
    # model), so the example is not kept at all rather than kept half-usable.
    registered = await _register(registry, "upload", example_input=[row])
    assert registered.get("example_input") is None
    for text in await _stored_and_announced(registry, registered):
        assert EMAIL not in text and '"gold"' not in _without_signature(text)
        version = json.loads(text)
        assert (version.get("data") or version).get("example_input") is None


async def test_a_version_without_pii_fields_is_stored_as_given(registry: RegistryHarness) -> None:
    example = [{"x0": 0.5, "x1": -1.0}]
    registered = await _register(
        registry,
        "upload",
        signature=version_metadata()["signature"],
        reference_profile=None,
        example_input=example,
    )
    assert registered["example_input"] == example


def test_production_refuses_a_placeholder_salt_and_serves_only_with_one(tmp_path: Path) -> None:
    production = {"mode": "production", "jwt_secret": "j" * 40, "home": tmp_path}
    for placeholder in ("embedded-pii-salt", "short-salt"):
        with pytest.raises(ValidationError, match="FLEET_PII_SALT"):
            RegistrySettings(**production, pii_salt=placeholder)
    with pytest.raises(ValueError, match="FLEET_PII_SALT"):
        create_app(RegistrySettings(**production))  # the migrate job's settings, not a serving registry
    create_app(RegistrySettings(**production, pii_salt=SALT))
    assert RegistrySettings(home=tmp_path).pii_hasher().hash("x") == PiiHasher("embedded-pii-salt").hash("x")
