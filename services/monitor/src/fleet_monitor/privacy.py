"""PII fields as the monitor sees them: the gateway replaces every value of a field marked ``pii``
by ``sha256:<hex>`` of an HMAC keyed with ``FLEET_PII_SALT`` before it logs a request, so the
monitor compares like with like only if it moves the reference profile into the same space.

A PII category's reference frequencies are re-keyed by the same keyed hash (values already in that
form, as a privacy-preserving registration stores them, are kept); a numeric PII field has no
order left once hashed, so it is not tested for drift or out-of-range values at all, and neither is
a PII category when the salt is unknown (``FLEET_PII_SALT`` unset in production). Without this
every window of a PII category would drift (no hashed value is a reference category) and every
row would count as out of range.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import orjson

from fleet_core.schemas import CategoricalProfile, FieldSpec, NumericProfile, ReferenceProfile

EMBEDDED_PII_SALT = "embedded-pii-salt"
"""The embedded stack's salt, the same default as the gateway's (refused in production by both)."""
OTHER = "__other__"
_HASHED = re.compile(r"sha256:[0-9a-f]{64}")


class PiiHasher:
    """The gateway's hash of a PII value (``fleet_gateway.inference_log.PiiHasher``; a unit test
    holds the two to the same output)."""

    def __init__(self, salt: str) -> None:
        self._key = salt.encode()

    def hash(self, value: Any) -> str:
        raw = value.encode() if isinstance(value, str) else orjson.dumps(value)
        return "sha256:" + hmac.new(self._key, raw, hashlib.sha256).hexdigest()

    def category(self, spec: FieldSpec, category: str) -> str:
        """A reference category (profiles store ``str(value)``) as the gateway logs that value."""
        if category == OTHER or _HASHED.fullmatch(category):
            return category
        if spec.type == "bool" and category in ("True", "False"):
            return self.hash(category == "True")  # the gateway hashes the JSON value: true / false
        return self.hash(category)


def drift_profile(
    profile: ReferenceProfile | None, inputs: list[FieldSpec], hasher: PiiHasher | None
) -> ReferenceProfile | None:
    """``profile`` with every PII category re-keyed as logged, and numeric PII features left out;
    without a ``hasher`` (the salt is unknown) every PII feature is left out."""
    if profile is None:
        return None
    pii = {spec.name: spec for spec in inputs if spec.pii}
    if not pii:
        return profile
    features: dict[str, NumericProfile | CategoricalProfile] = {}
    for name, feature in profile.features.items():
        spec = pii.get(name)
        if spec is None:
            features[name] = feature
        elif isinstance(feature, CategoricalProfile) and hasher is not None:
            frequencies: dict[str, int] = {}
            for category, count in feature.frequencies.items():
                key = hasher.category(spec, category)
                frequencies[key] = frequencies.get(key, 0) + count
            features[name] = feature.model_copy(update={"frequencies": frequencies})
    return profile.model_copy(update={"features": features})
