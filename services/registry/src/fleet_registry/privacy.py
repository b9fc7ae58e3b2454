"""No raw PII in the registry: what a registration says about fields marked ``pii``, moved into the
gateway's hashed space (``fleet_core.privacy.PiiHasher``) before it is stored or announced.

- A PII category's reference frequencies are re-keyed by the keyed hash (counts of values that hash
  alike merged), which is also what the monitor compares hashed traffic with.
- A PII field's numeric profile is left out: a hash has no order, so there is nothing to compare a
  hashed number with (the monitor leaves numeric PII out of drift too), and its quantiles and sample
  are raw values.
- In the example input a PII string becomes its hash (still a string, still valid). A PII value of
  any other type would no longer validate against the signature once hashed, so such an example
  input is dropped as a whole.

The signature's own ``categories`` of a PII category field stay as given: the gateway validates the
raw request value against them before it hashes anything.
"""

from __future__ import annotations

from typing import Any

from fleet_core.privacy import PiiHasher
from fleet_core.schemas import CategoricalProfile, FieldSpec, NumericProfile, ReferenceProfile, Signature


def _pii_inputs(signature: Signature) -> dict[str, FieldSpec]:
    return {spec.name: spec for spec in signature.inputs if spec.pii}


def private_profile(
    profile: ReferenceProfile | None, signature: Signature, hasher: PiiHasher
) -> ReferenceProfile | None:
    """``profile`` with every PII category hashed and every numeric PII feature left out."""
    pii = _pii_inputs(signature)
    if profile is None or not pii:
        return profile
    features: dict[str, NumericProfile | CategoricalProfile] = {}
    for name, feature in profile.features.items():
        spec = pii.get(name)
        if spec is None:
            features[name] = feature
        elif isinstance(feature, CategoricalProfile):
            frequencies: dict[str, int] = {}
            for category, count in feature.frequencies.items():
                key = hasher.category(spec, category)
                frequencies[key] = frequencies.get(key, 0) + count
            features[name] = feature.model_copy(update={"frequencies": frequencies})
    return profile.model_copy(update={"features": features})


def private_example(
    rows: list[dict[str, Any]] | None, signature: Signature, hasher: PiiHasher
) -> list[dict[str, Any]] | None:
    """``rows`` with every PII string hashed; None when a row holds a PII value of another type."""
    pii = _pii_inputs(signature)
    if not rows or not pii:
        return rows
    strings = [name for name, spec in pii.items() if spec.type == "string" and not spec.shape]
    for row in rows:
        for name in pii.keys() - set(strings):
            if row.get(name) is not None:
                return None
    return hasher.filter_rows(rows, strings)
