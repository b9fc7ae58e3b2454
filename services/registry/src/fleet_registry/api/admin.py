"""/v1/audit and /v1/tokens: the audit log, token issuance, listing and revocation."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, status

from fleet_core.auth import Role
from fleet_core.errors import Forbidden
from fleet_registry.api.deps import CurrentPrincipal, Limit, Offset, StoreDep
from fleet_registry.api.schemas import RevokedToken, RevokedTokens, TokenRequest, TokenResponse
from fleet_registry.entities import AuditEntry, IssuedToken, Page
from fleet_registry.tokens import issue_token

router = APIRouter(prefix="/v1", tags=["admin"])


@router.get(
    "/audit",
    summary="The platform's audit log (admins only)",
    description="Every write in every service and every refused attempt (401/403), newest first: "
    "who, what, when, where (`service`) and how it ended (`outcome`: ok, denied, rejected, error).",
)
async def audit(
    store: StoreDep,
    who: CurrentPrincipal,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=100)] = None,
    resource: Annotated[str | None, Query(max_length=400)] = None,
    service: Annotated[str | None, Query(max_length=40)] = None,
    outcome: Literal["ok", "denied", "rejected", "error"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> Page[AuditEntry]:
    return await store.list_audit(
        who,
        actor_filter=actor,
        action=action,
        resource=resource,
        service=service,
        outcome=outcome,
        limit=limit,
        offset=offset,
    )


@router.post("/tokens", status_code=status.HTTP_201_CREATED, summary="Issue a bearer token (admins only)")
async def issue(
    body: TokenRequest, request: Request, store: StoreDep, who: CurrentPrincipal
) -> TokenResponse:
    if not who.is_admin:
        raise Forbidden("only admins may issue tokens")
    token, record = await issue_token(
        store,
        request.app.state.tokens,
        who,
        subject=body.subject,
        role=body.role,
        teams=body.teams,
        scopes=body.scopes,
        ttl=timedelta(days=body.ttl_days) if body.ttl_days else None,
    )
    return TokenResponse(
        token=token,
        token_id=record.token_id,
        subject=body.subject,
        role=body.role,
        teams=body.teams,
        expires_at=record.expires_at.isoformat() if record.expires_at else None,
    )


@router.delete(
    "/tokens/{token_id}",
    summary="Revoke a token (admins only)",
    description="Every service refuses the token within `FLEET_REVOCATION_REFRESH_S` (default 10 s); "
    "the registry at once. Revoking twice is harmless.",
)
async def revoke(
    token_id: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[0-9a-f]{1,64}$")],
    request: Request,
    store: StoreDep,
    who: CurrentPrincipal,
) -> IssuedToken:
    record = await store.revoke_token(who, token_id)
    request.app.state.tokens.set_revoked(await store.revoked_token_ids())
    return record


@router.get(
    "/tokens/revoked",
    summary="Ids of revoked tokens that have not expired (any token)",
    description="What every service's token verifier refreshes from; ids only, never the tokens.",
)
async def revoked(store: StoreDep, who: CurrentPrincipal) -> RevokedTokens:
    who.require_role(Role.VIEWER)
    ids = sorted(await store.revoked_token_ids())
    return RevokedTokens(items=[RevokedToken(token_id=i) for i in ids])


@router.get("/tokens", summary="Tokens issued so far, without their secrets (admins only)")
async def list_tokens(
    store: StoreDep, who: CurrentPrincipal, limit: Limit = 100, offset: Offset = 0
) -> Page[IssuedToken]:
    return await store.list_tokens(who, limit=limit, offset=offset)
