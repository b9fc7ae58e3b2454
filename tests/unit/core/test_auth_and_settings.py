"""Tokens, roles scoped to teams, and the refusal of placeholder secrets in production."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from fleet_core.auth import Principal, Role, TokenAuthority
from fleet_core.errors import Forbidden, Unauthorized
from fleet_core.settings import FleetSettings

SECRET = "x" * 40


def test_a_token_verifies_to_its_claims() -> None:
    authority = TokenAuthority(SECRET)
    token, token_id, expires = authority.issue("ana", Role.SCIENTIST, ["growth"])
    p = authority.verify(token)
    assert (p.subject, p.role, p.teams, p.token_id) == ("ana", Role.SCIENTIST, ["growth"], token_id)
    assert expires is not None


def test_expired_and_foreign_tokens_are_refused() -> None:
    authority = TokenAuthority(SECRET)
    expired, _, _ = authority.issue("ana", Role.VIEWER, [], ttl=timedelta(seconds=-1))
    with pytest.raises(Unauthorized, match="expired"):
        authority.verify(expired)
    foreign, _, _ = TokenAuthority("y" * 40).issue("eve", Role.ADMIN, ["*"])
    with pytest.raises(Unauthorized):
        authority.verify(foreign)


def test_roles_are_ordered_and_scoped_to_teams() -> None:
    scientist = Principal(subject="s", role=Role.SCIENTIST, teams=["a"])
    scientist.require(Role.VIEWER, "a")
    with pytest.raises(Forbidden):
        scientist.require(Role.DEPLOYER, "a")
    with pytest.raises(Forbidden):
        scientist.require(Role.SCIENTIST, "b")
    Principal(subject="all", role=Role.VIEWER, teams=["*"]).require(Role.VIEWER, "b")
    Principal(subject="root", role=Role.ADMIN).require(Role.ADMIN, "any")


def test_production_refuses_a_placeholder_or_short_secret() -> None:
    with pytest.raises(ValidationError, match="FLEET_JWT_SECRET"):
        FleetSettings(mode="production")
    with pytest.raises(ValidationError):
        FleetSettings(mode="production", jwt_secret="short")
    assert FleetSettings(mode="production", jwt_secret=SECRET).mode == "production"
    assert FleetSettings().mode == "embedded"  # the embedded default works out of the box
