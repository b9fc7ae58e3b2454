"""/v1/audit and /v1/tokens: admin-only views and token issuance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request, status

from fleet_core.auth import TokenAuthority
from fleet_core.errors import Forbidden
from fleet_registry.api.deps import CurrentPrincipal, Limit, Offset, StoreDep
from fleet_registry.api.schemas import TokenRequest, TokenResponse
from fleet_registry.entities import AuditEntry, IssuedToken, Page

router = APIRouter(prefix="/v1", tags=["admin"])


@router.get("/audit", summary="The audit log of every write (admins only)")
async def audit(
    store: StoreDep,
    who: CurrentPrincipal,
    actor: str | None = None,
    action: str | None = None,
    resource: str | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AuditEntry]:
    return await store.list_audit(
        who, actor_filter=actor, action=action, resource=resource, limit=limit, offset=offset
    )


@router.post("/tokens", status_code=status.HTTP_201_CREATED, summary="Issue a bearer token (admins only)")
async def issue_token(
    body: TokenRequest, request: Request, store: StoreDep, who: CurrentPrincipal
) -> TokenResponse:
    if not who.is_admin:
        raise Forbidden("only admins may issue tokens")
    authority: TokenAuthority = request.app.state.tokens
    token, token_id, expires = authority.issue(
        body.subject,
        body.role,
        body.teams,
        scopes=body.scopes,
        ttl=timedelta(days=body.ttl_days) if body.ttl_days else None,
    )
    record = IssuedToken(
        token_id=token_id,
        subject=body.subject,
        role=str(body.role),
        teams=body.teams,
        scopes=body.scopes,
        issued_at=datetime.now(UTC),
        expires_at=expires,
        issued_by=who.subject,
    )
    await store.record_token(who, record)
    return TokenResponse(
        token=token,
        token_id=token_id,
        subject=body.subject,
        role=body.role,
        teams=body.teams,
        expires_at=expires.isoformat() if expires else None,
    )


@router.get("/tokens", summary="Tokens issued so far, without their secrets (admins only)")
async def list_tokens(
    store: StoreDep, who: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> Page[IssuedToken]:
    return await store.list_tokens(who, limit=limit, offset=offset)
