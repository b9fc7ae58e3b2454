"""Issuing tokens that are always on record: the API and ``python -m fleet_registry issue-token``
both sign through here, so every token can be listed, audited and revoked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fleet_core.auth import Principal, Role, TokenAuthority
from fleet_registry.entities import IssuedToken
from fleet_registry.store import RegistryStore

BOOTSTRAP = Principal(subject="bootstrap:issue-token", role=Role.ADMIN, teams=["*"])
"""Who issued a token minted with FLEET_JWT_SECRET on the command line."""


async def issue_token(
    store: RegistryStore,
    authority: TokenAuthority,
    actor: Principal,
    *,
    subject: str,
    role: Role,
    teams: list[str],
    scopes: list[str] | None = None,
    ttl: timedelta | None,
) -> tuple[str, IssuedToken]:
    """Sign a token and record it (jti, subject, role, teams, expiry) with an audit entry; the
    record is written before the token is handed out, so no unrecorded token ever exists."""
    token, token_id, expires = authority.issue(subject, role, teams, scopes=scopes or [], ttl=ttl)
    record = IssuedToken(
        token_id=token_id,
        subject=subject,
        role=str(role),
        teams=teams,
        scopes=scopes or [],
        issued_at=datetime.now(UTC),
        expires_at=expires,
        issued_by=actor.subject,
    )
    await store.record_token(actor, record)
    return token, record
