"""The keyed hash of PII values, in one place for every service that handles them.

A signature field marked ``pii`` never leaves the gateway in the clear: its values are replaced by
``sha256:<hex>`` of an HMAC keyed with ``FLEET_PII_SALT`` (joinable, not readable). The registry
hashes PII values of reference profiles and example inputs with the same key at registration, and
the monitor re-keys reference categories with it, so every service compares like with like only if
all of them use this one hasher and the same salt.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Any

import orjson

from fleet_core.schemas import FieldSpec

EMBEDDED_PII_SALT = "embedded-pii-salt"
"""The embedded stack's salt; refused outside embedded mode (a known salt makes hashed PII
guessable by brute force over small value spaces)."""
MIN_PII_SALT_CHARS = 16
OTHER = "__other__"
"""The bucket a reference profile folds rare categories into; not a value, so never hashed."""
HASHED = re.compile(r"sha256:[0-9a-f]{64}")
"""A value already in the hasher's form (``PiiHasher.category`` keeps it as is)."""


def check_pii_salt(salt: str, mode: str) -> str:
    """``salt`` if it may key the PII hash in ``mode``; a ValueError naming ``FLEET_PII_SALT`` if not."""
    if mode != "embedded" and (salt == EMBEDDED_PII_SALT or len(salt) < MIN_PII_SALT_CHARS):
        raise ValueError(
            f"FLEET_PII_SALT must be set to a random value of at least {MIN_PII_SALT_CHARS} characters "
            "outside embedded mode, the same on the gateway, the monitor and the registry"
        )
    return salt


class PiiHasher:
    """Replaces a value by ``sha256:<hex>`` of an HMAC keyed with the salt: joinable, not readable."""

    def __init__(self, salt: str) -> None:
        self._key = salt.encode()

    def hash(self, value: Any) -> str:
        """A value as the gateway logs it: strings by their UTF-8 bytes, anything else by its JSON."""
        raw = value.encode() if isinstance(value, str) else orjson.dumps(value)
        return "sha256:" + hmac.new(self._key, raw, hashlib.sha256).hexdigest()

    def filter_rows(self, rows: list[dict[str, Any]], pii: Iterable[str]) -> list[dict[str, Any]]:
        """``rows`` with every non-null value of a ``pii`` field hashed (copies; the input is kept)."""
        fields = list(pii)
        if not fields:
            return rows
        out = []
        for row in rows:
            row = dict(row)
            for name in fields:
                if name in row and row[name] is not None:
                    row[name] = self.hash(row[name])
            out.append(row)
        return out

    def category(self, spec: FieldSpec, category: str) -> str:
        """A reference category (profiles store ``str(value)``) as the gateway logs that value;
        the ``__other__`` bucket and values already hashed are kept."""
        if category == OTHER or HASHED.fullmatch(category):
            return category
        if spec.type == "bool" and category in ("True", "False"):
            return self.hash(category == "True")  # the gateway hashes the JSON value: true / false
        return self.hash(category)
