"""JWT bearer tokens with roles scoped to teams, verified locally by every service.

Roles are ordered: viewer < scientist < deployer < admin. A principal acts on a
team's resources when the team is in its ``teams`` claim (``*`` means all);
admins act everywhere.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from fleet_core.errors import Forbidden, Unauthorized

ALL_TEAMS = "*"


class Role(StrEnum):
    VIEWER = "viewer"
    SCIENTIST = "scientist"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Principal(BaseModel):
    """Who is calling: the verified claims of a bearer token."""

    subject: str
    role: Role
    teams: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=list)
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def has_role(self, role: Role) -> bool:
        return self.role.rank >= role.rank

    def in_team(self, team: str) -> bool:
        return self.sees_all_teams or team in self.teams

    @property
    def sees_all_teams(self) -> bool:
        return self.is_admin or ALL_TEAMS in self.teams

    def require_role(self, role: Role) -> None:
        """Raise Forbidden unless this principal has ``role``. Only for routes whose results are
        then filtered to the caller's teams (listings); anything that touches one team's resource
        calls :meth:`require` with that team."""
        if not self.has_role(role):
            raise Forbidden(f"role '{self.role}' may not do this; '{role}' or higher is required")

    def require(self, role: Role, team: str | None) -> None:
        """Raise Forbidden unless this principal has ``role`` and belongs to ``team``.

        Fails closed: a resource whose team is unknown (``None``) is reachable only by principals
        who see every team (admins, ``*`` members), never skipped."""
        self.require_role(role)
        if team is None:
            if not self.sees_all_teams:
                raise Forbidden(
                    f"'{self.subject}' may not act on a resource that belongs to no known team", field="team"
                )
            return
        if not self.in_team(team):
            raise Forbidden(f"'{self.subject}' is not a member of team '{team}'", field="team")


class TokenAuthority:
    """Issues HS256 tokens with the current shared secret; verifies them with it or, during a key
    rotation, with one of the previous secrets, so tokens signed before the rotation keep working
    until the previous secret is retired."""

    def __init__(self, secret: str, issuer: str = "modelfleet", previous: Sequence[str] = ()) -> None:
        self._secret = secret
        self._issuer = issuer
        self._keys = (secret, *previous)
        self._revoked: frozenset[str] = frozenset()

    def set_revoked(self, token_ids: Iterable[str]) -> None:
        """Replace the revocation list (token ids, ``jti``) that :meth:`verify` refuses."""
        self._revoked = frozenset(token_ids)

    def is_revoked(self, token_id: str | None) -> bool:
        return token_id is not None and token_id in self._revoked

    def issue(
        self,
        subject: str,
        role: Role,
        teams: list[str] | None = None,
        *,
        ttl: timedelta | None = timedelta(days=30),
        scopes: list[str] | None = None,
    ) -> tuple[str, str, datetime | None]:
        """A signed token, its id and its expiry (None = never expires)."""
        now = datetime.now(UTC)
        token_id = uuid.uuid4().hex
        claims: dict[str, object] = {
            "sub": subject,
            "role": str(role),
            "teams": teams or [],
            "scopes": scopes or [],
            "iss": self._issuer,
            "iat": now,
            "jti": token_id,
        }
        expires = now + ttl if ttl else None
        if expires:
            claims["exp"] = expires
        return jwt.encode(claims, self._secret, algorithm="HS256"), token_id, expires

    def verify(self, token: str) -> Principal:
        claims = self._decode(token)
        if self.is_revoked(claims.get("jti")):
            raise Unauthorized("the bearer token has been revoked")
        try:
            role = Role(claims.get("role", ""))
        except ValueError as exc:
            raise Unauthorized("the bearer token names an unknown role") from exc
        return Principal(
            subject=claims["sub"],
            role=role,
            teams=list(claims.get("teams") or []),
            scopes=list(claims.get("scopes") or []),
            token_id=claims.get("jti"),
        )

    def _decode(self, token: str) -> dict[str, Any]:
        for key in self._keys:
            try:
                return jwt.decode(
                    token,
                    key,
                    algorithms=["HS256"],
                    issuer=self._issuer,
                    options={"require": ["sub", "iss", "iat"]},
                )
            except jwt.InvalidSignatureError:
                continue  # perhaps signed before a rotation: try the previous secrets
            except jwt.ExpiredSignatureError as exc:
                raise Unauthorized("the bearer token has expired") from exc
            except jwt.PyJWTError as exc:
                raise Unauthorized(f"the bearer token is invalid: {exc}") from exc
        raise Unauthorized("the bearer token is invalid: Signature verification failed")


_bearer = HTTPBearer(auto_error=False, description="A ModelFleet token (`fleet tokens issue`)")


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
"""The raw bearer credentials, or None; for endpoints where a token is optional."""


def get_principal(request: Request, credentials: BearerCredentials) -> Principal:
    """FastAPI dependency: the verified caller. Needs ``app.state.tokens`` (a TokenAuthority)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    authority: TokenAuthority = request.app.state.tokens
    return authority.verify(credentials.credentials)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
