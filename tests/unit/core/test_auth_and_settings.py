"""Tokens, roles ordered and scoped to teams, and the refusal of placeholder secrets in production."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from pydantic import ValidationError

from fleet_core.auth import Principal, Role, TokenAuthority
from fleet_core.errors import Forbidden, Unauthorized
from fleet_core.settings import DEFAULT_JWT_SECRET, FleetSettings

SECRET = "x" * 40


def test_a_token_verifies_to_its_claims() -> None:
    authority = TokenAuthority(SECRET)
    token, token_id, expires = authority.issue("ana", Role.SCIENTIST, ["growth"], scopes=["models:write"])
    p = authority.verify(token)
    assert (p.subject, p.role, p.teams, p.scopes, p.token_id) == (
        "ana",
        Role.SCIENTIST,
        ["growth"],
        ["models:write"],
        token_id,
    )
    assert expires is not None and timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)


def test_a_token_without_a_ttl_never_expires() -> None:
    authority = TokenAuthority(SECRET)
    token, _, expires = authority.issue("svc", Role.DEPLOYER, ["*"], ttl=None)
    assert expires is None
    assert authority.verify(token).subject == "svc"


def test_an_expired_token_is_refused() -> None:
    authority = TokenAuthority(SECRET)
    expired, _, _ = authority.issue("ana", Role.VIEWER, [], ttl=timedelta(seconds=-1))
    with pytest.raises(Unauthorized, match="expired") as refused:
        authority.verify(expired)
    assert refused.value.status == 401
    assert refused.value.headers == {"WWW-Authenticate": "Bearer"}


def test_a_token_signed_with_another_secret_is_refused() -> None:
    foreign, _, _ = TokenAuthority("y" * 40).issue("eve", Role.ADMIN, ["*"])
    with pytest.raises(Unauthorized, match="invalid"):
        TokenAuthority(SECRET).verify(foreign)


def test_a_tampered_token_is_refused() -> None:
    authority = TokenAuthority(SECRET)
    token, _, _ = authority.issue("ana", Role.VIEWER, ["a"])
    header, _, signature = token.split(".")
    forged, _, _ = TokenAuthority("z" * 40).issue("ana", Role.ADMIN, ["*"])
    with pytest.raises(Unauthorized):
        authority.verify(f"{header}.{forged.split('.')[1]}.{signature}")
    with pytest.raises(Unauthorized):
        authority.verify("not-a-token")


def test_a_token_of_another_issuer_or_with_an_unknown_role_is_refused() -> None:
    other, _, _ = TokenAuthority(SECRET, issuer="someone-else").issue("ana", Role.ADMIN)
    with pytest.raises(Unauthorized):
        TokenAuthority(SECRET).verify(other)
    now = datetime.now(UTC)
    claims = {"sub": "ana", "role": "superuser", "iss": "modelfleet", "iat": now}
    with pytest.raises(Unauthorized, match="unknown role"):
        TokenAuthority(SECRET).verify(jwt.encode(claims, SECRET, algorithm="HS256"))


def test_an_unsigned_token_is_refused() -> None:
    claims = {"sub": "eve", "role": "admin", "iss": "modelfleet", "iat": datetime.now(UTC)}
    with pytest.raises(Unauthorized):
        TokenAuthority(SECRET).verify(jwt.encode(claims, None, algorithm="none"))  # type: ignore[arg-type]


def test_roles_are_ranked_viewer_scientist_deployer_admin() -> None:
    assert [r.rank for r in (Role.VIEWER, Role.SCIENTIST, Role.DEPLOYER, Role.ADMIN)] == [0, 1, 2, 3]
    deployer = Principal(subject="d", role=Role.DEPLOYER, teams=["a"])
    assert [deployer.has_role(r) for r in Role] == [True, True, True, False]


def test_a_principal_acts_only_with_its_role_or_lower() -> None:
    scientist = Principal(subject="s", role=Role.SCIENTIST, teams=["a"])
    scientist.require(Role.VIEWER, "a")
    scientist.require(Role.SCIENTIST, "a")
    with pytest.raises(Forbidden, match="'deployer' or higher"):
        scientist.require(Role.DEPLOYER, "a")


def test_a_principal_acts_only_on_its_teams() -> None:
    scientist = Principal(subject="s", role=Role.SCIENTIST, teams=["a"])
    with pytest.raises(Forbidden, match="team 'b'") as refused:
        scientist.require(Role.SCIENTIST, "b")
    assert refused.value.field == "team" and refused.value.status == 403
    Principal(subject="all", role=Role.VIEWER, teams=["*"]).require(Role.VIEWER, "b")
    Principal(subject="root", role=Role.ADMIN).require(Role.ADMIN, "any")  # admins act everywhere
    with pytest.raises(Forbidden):
        Principal(subject="nobody", role=Role.DEPLOYER, teams=[]).require(Role.VIEWER, "a")


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("secret", [None, "changethis", DEFAULT_JWT_SECRET, "short-but-random-9f2c"])
def test_production_refuses_a_placeholder_or_short_secret(secret: str | None) -> None:
    kwargs = {"jwt_secret": secret} if secret is not None else {}
    with pytest.raises(ValidationError, match="FLEET_JWT_SECRET"):
        FleetSettings(mode="production", **kwargs)


def test_production_refuses_a_placeholder_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEET_MODE", "production")
    monkeypatch.setenv("FLEET_JWT_SECRET", "changethis")
    with pytest.raises(ValidationError, match="FLEET_JWT_SECRET"):
        FleetSettings()
    monkeypatch.setenv("FLEET_JWT_SECRET", SECRET)
    assert FleetSettings().jwt_secret.get_secret_value() == SECRET


def test_the_embedded_default_works_out_of_the_box(fleet_home) -> None:  # type: ignore[no-untyped-def]
    settings = FleetSettings()
    assert settings.mode == "embedded"
    assert settings.home == fleet_home  # FLEET_HOME, never the real ~/.fleet in tests


def test_secrets_stay_out_of_the_settings_repr() -> None:
    settings = FleetSettings(jwt_secret=SECRET, s3_secret_key="s3-" + SECRET)
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


def test_kafka_servers_are_split_from_the_bootstrap_list() -> None:
    settings = FleetSettings(kafka_bootstrap="a:9092, b:9092,")
    assert settings.kafka_servers == ["a:9092", "b:9092"]


OLD_KEY = "old-secret-that-signed-last-quarters-tokens-0123"
NEW_KEY = "new-secret-after-the-rotation-of-the-keys-456789"


def test_during_a_key_rotation_old_tokens_still_verify_and_new_ones_use_the_new_key(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("FLEET_MODE", "production")
    monkeypatch.setenv("FLEET_JWT_SECRET", NEW_KEY)
    monkeypatch.setenv("FLEET_JWT_PREVIOUS_SECRETS", OLD_KEY)
    rotating = FleetSettings().token_authority()

    old_token, _, _ = TokenAuthority(OLD_KEY).issue("ci-bot", Role.DEPLOYER, ["growth"])
    assert rotating.verify(old_token).subject == "ci-bot"

    new_token, _, _ = rotating.issue("ana", Role.VIEWER, ["growth"])
    assert TokenAuthority(NEW_KEY).verify(new_token).subject == "ana", "signed with the new key"
    with pytest.raises(Unauthorized):
        TokenAuthority(OLD_KEY).verify(new_token)

    # Rotation over: the previous secret is removed, and tokens it signed stop working.
    monkeypatch.delenv("FLEET_JWT_PREVIOUS_SECRETS")
    with pytest.raises(Unauthorized, match="invalid"):
        FleetSettings().token_authority().verify(old_token)


def test_an_expired_token_signed_with_a_previous_key_is_still_expired() -> None:
    past = timedelta(seconds=-5)
    token, _, _ = TokenAuthority(OLD_KEY).issue("someone", Role.VIEWER, ttl=past)
    with pytest.raises(Unauthorized, match="expired"):
        TokenAuthority(NEW_KEY, previous=[OLD_KEY]).verify(token)


def test_production_refuses_a_short_previous_secret() -> None:
    with pytest.raises(ValidationError, match="FLEET_JWT_PREVIOUS_SECRETS"):
        FleetSettings(mode="production", jwt_secret=NEW_KEY, jwt_previous_secrets=f"{OLD_KEY}, short")
