"""The pool's catalog: every pool-placed version's spec, kept in Ray's KV store by digest.

Serve's controller deep-copies each deployment's info, ``user_config`` included, on every step of
its control loop (``ApplicationState._reconcile_target_deployments``, ten times a second). With
every model spec in the pool's ``user_config`` that took 0.16-0.32 of this box's two cores at
1,000 models (py-spy, 2026-12-02). So the specs live in Ray's KV store (the GCS, which Serve's own
checkpoints use too, so the catalog survives what they survive), content-addressed by sha256,
and the pool's ``user_config`` is a ``PoolCatalogRef``: the key, the digest and the idle policy,
a few hundred bytes whatever the fleet's size. A replica fetches the catalog when the digest
changes and checks it against the digest. ADR 0034.

``ServingControl.apply_pool`` publishes before it applies; the last ``KEEP`` catalogs of an app are
kept (an index key lists them in publish order), older ones are deleted, and removing the app
deletes them all.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, ConfigDict, Field

from fleet_core.serving import ModelSpec, PoolConfig
from fleet_serving.errors import ServingControlError

NAMESPACE = "fleet"
PREFIX = "pool-catalog/"
KEEP = 4
"""Catalogs kept per app. Applies are serialized, and Serve hands every replica the current
``user_config``, so only a replica still reconfiguring from an apply or two ago reads an old one."""


class PoolCatalogRef(BaseModel):
    """The pool deployment's ``user_config``: where its catalog is, and its idle policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="Ray KV key (namespace ``fleet``) of the catalog's JSON")
    digest: str = Field(description="sha256 of the catalog's bytes")
    models: int = Field(ge=0, description="How many versions it holds")
    idle_unload_s: float = Field(gt=0)


def encode(config: PoolConfig, app_name: str) -> tuple[PoolCatalogRef, bytes]:
    """The catalog's bytes and the reference to them (pure: publishing is ``publish``)."""
    data = json.dumps(
        {key: spec.model_dump(mode="json") for key, spec in sorted(config.models.items())},
        separators=(",", ":"),
    ).encode()
    digest = hashlib.sha256(data).hexdigest()
    ref = PoolCatalogRef(
        key=f"{PREFIX}{app_name}/{digest}",
        digest=digest,
        models=len(config.models),
        idle_unload_s=config.idle_unload_s,
    )
    return ref, data


def _index_key(app_name: str) -> str:
    return f"{PREFIX}{app_name}/index"


def publish(app_name: str, ref: PoolCatalogRef, data: bytes) -> None:
    """Store the catalog (needs a Ray connection), record it in the app's index, delete catalogs
    older than the last ``KEEP``."""
    from ray.experimental import internal_kv as kv

    kv._internal_kv_put(ref.key, data, overwrite=True, namespace=NAMESPACE)
    raw = kv._internal_kv_get(_index_key(app_name), namespace=NAMESPACE)
    index = [k for k in (json.loads(raw) if raw else []) if k != ref.key] + [ref.key]
    for old in index[:-KEEP]:
        kv._internal_kv_del(old, namespace=NAMESPACE)
    kv._internal_kv_put(_index_key(app_name), json.dumps(index[-KEEP:]), overwrite=True, namespace=NAMESPACE)


def forget(app_name: str) -> None:
    """Delete every catalog of a removed app, and its index."""
    from ray.experimental import internal_kv as kv

    kv._internal_kv_del(f"{PREFIX}{app_name}/", del_by_prefix=True, namespace=NAMESPACE)


def fetch(ref: PoolCatalogRef) -> dict[str, ModelSpec]:
    """The catalog ``ref`` names, checked against its digest (blocking: call from a thread)."""
    from ray.experimental import internal_kv as kv

    data = kv._internal_kv_get(ref.key, namespace=NAMESPACE)
    if data is None:
        raise ServingControlError(
            f"pool catalog {ref.key!r} is not in Ray's KV store (namespace {NAMESPACE!r}): "
            "ServingControl.apply_pool publishes it before applying the pool"
        )
    if hashlib.sha256(data).hexdigest() != ref.digest:
        raise ServingControlError(f"pool catalog {ref.key!r} does not match its digest {ref.digest}")
    return {key: ModelSpec.model_validate(spec) for key, spec in json.loads(data).items()}
