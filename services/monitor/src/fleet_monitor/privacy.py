"""PII fields as the monitor sees them: the gateway replaces every value of a field marked ``pii``
by ``sha256:<hex>`` of an HMAC keyed with ``FLEET_PII_SALT`` (``fleet_core.privacy.PiiHasher``)
before it logs a request, so the monitor compares like with like only if it moves the reference
profile into the same space.

A PII category's reference frequencies are re-keyed by the same keyed hash (values already in that
form, as a privacy-preserving registration stores them, are kept); a numeric PII field has no
order left once hashed, so it is not tested for drift or out-of-range values at all, and neither is
a PII category when the salt is unknown (``FLEET_PII_SALT`` unset in production). Without this
every window of a PII category would drift (no hashed value is a reference category) and every
row would count as out of range.
"""

from __future__ import annotations

from fleet_core.privacy import PiiHasher
from fleet_core.schemas import CategoricalProfile, FieldSpec, NumericProfile, ReferenceProfile


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
