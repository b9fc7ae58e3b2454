"""fleet_core: what every ModelFleet service shares.

Modules: ``settings`` (FLEET_* configuration), ``events`` (CloudEvents envelope,
topic catalogue, payloads), ``schemas`` (signatures, profiles, recipes, quotas),
``broker`` (FastStream wiring, topics, dead-letter consumers), ``outbox``
(transactional outbox relay and idempotent inbox), ``db`` (SQLAlchemy async +
Alembic), ``auth`` (JWT roles scoped to teams), ``errors`` (problem+json),
``log`` (structlog + request ids), ``metrics`` (Prometheus), ``artifacts``
(local and S3 stores), ``profile`` (reference profiles), ``validation``
(rows against a signature), ``privacy`` (the keyed hash of PII values), ``service``
(shared FastAPI wiring).
"""

__version__ = "0.1.0"
