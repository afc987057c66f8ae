from __future__ import annotations

import base64
import dataclasses
import json
import time
from typing import Any

import jwt
import pytest

from chalicelib.auth import AuthError, connect_identity, require_admin_bearer, verify_token
from chalicelib.config import Settings
from tests.helpers import AUDIENCE, ISSUER, SECRET, token

JWT = Settings(
    table_name="t", auth_mode="jwt", jwt_secret=SECRET, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
)
NONE = Settings(table_name="t", auth_mode="none")


def test_valid_token_gives_the_subject_and_role() -> None:
    identity = verify_token(token("u_9", role="admin"), JWT)
    assert identity.user_id == "u_9" and identity.is_admin("admin")


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _claims(drop: str = "", **changes: Any) -> dict[str, Any]:
    """Valid claims (sub, iat, exp) with one dropped or changed: each bad token has one flaw."""
    now = int(time.time())
    claims = {"sub": "u_1", "iat": now, "exp": now + 60, "iss": ISSUER, "aud": AUDIENCE, **changes}
    claims.pop(drop, None)
    return claims


def _hs(claims: dict[str, Any], algorithm: str = "HS256") -> str:
    return jwt.encode(claims, SECRET, algorithm=algorithm)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        token(exp_in=-10),
        jwt.encode(_claims(), "another-secret-of-sufficient-length!!", algorithm="HS256"),
        _hs(_claims(drop="exp")),
        _hs(_claims(drop="sub")),
        _hs(_claims(sub="u#1")),
        _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + ".",
        _hs(_claims(), algorithm="HS512"),
        _hs(_claims(drop="iat")),
        _hs(_claims(iat=int(time.time()) + 600)),
        _hs(_claims(iat="yesterday")),
        token(exp_in=86400 + 60),
    ],
    ids=[
        "empty",
        "garbage",
        "expired",
        "wrong-key",
        "no-exp",
        "no-sub",
        "bad-sub",
        "alg-none",
        "other-alg",
        "no-iat",
        "future-iat",
        "non-numeric-iat",
        "lifetime-over-24h",
    ],
)
def test_bad_tokens_are_refused_with_401(bad: str) -> None:
    with pytest.raises(AuthError) as info:
        connect_identity({"token": bad}, JWT)
    assert info.value.status == 401


def test_token_lifetime_is_capped_by_the_setting() -> None:
    short = dataclasses.replace(JWT, jwt_max_lifetime_seconds=600)
    assert verify_token(token(exp_in=600), short).user_id == "u_123"
    with pytest.raises(AuthError, match="token lifetime exceeds 600 seconds") as info:
        verify_token(token(exp_in=601), short)
    assert info.value.status == 401
    # The lifetime is exp - iat as issued, not what is left of it.
    with pytest.raises(AuthError, match="lifetime"):
        verify_token(token(exp_in=60, iat=int(time.time()) - 3600), short)


def test_clock_skew_is_allowed_for_iat_but_never_stretches_exp() -> None:
    skewed = token(iat=int(time.time()) + 30)
    assert verify_token(skewed, JWT).user_id == "u_123"
    with pytest.raises(AuthError, match="expired"):
        verify_token(token(exp_in=-5, iat=int(time.time()) - 60), JWT)


def test_identity_carries_the_token_expiry() -> None:
    expires_at = int(time.time()) + 900
    identity = verify_token(_hs(_claims(exp=expires_at)), JWT)
    assert identity.expires_at == expires_at
    assert connect_identity({"userId": "u_1"}, NONE).expires_at is None


def test_tampered_subject_is_refused() -> None:
    header, payload, signature = token("u_1").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "admin"
    with pytest.raises(AuthError):
        verify_token(".".join([header, _b64(claims), signature]), JWT)


def test_no_auth_mode_takes_a_valid_user_id_or_makes_a_guest() -> None:
    assert connect_identity({"userId": "u_123"}, NONE).user_id == "u_123"
    guest = connect_identity({}, NONE)
    assert guest.user_id.startswith("guest-") and guest.anonymous
    with pytest.raises(AuthError) as info:
        connect_identity({"userId": "USER#x"}, NONE)
    assert info.value.status == 400


def test_jwt_mode_never_accepts_anonymous_or_user_id_connections() -> None:
    with pytest.raises(AuthError):
        connect_identity({"userId": "u_123"}, JWT)


def test_http_push_needs_an_admin_bearer_token() -> None:
    with pytest.raises(AuthError) as missing:
        require_admin_bearer(None, JWT)
    assert missing.value.status == 401
    with pytest.raises(AuthError) as not_admin:
        require_admin_bearer(f"Bearer {token('u_1')}", JWT)
    assert not_admin.value.status == 403
    assert require_admin_bearer(f"Bearer {token('ops', role='admin')}", JWT).user_id == "ops"


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "https://another-service.test/"},
        {"aud": "another-service"},
        {"aud": ["another-service"]},
        {"iss": None},
        {"aud": None},
    ],
    ids=["other-iss", "other-aud", "other-aud-list", "no-iss", "no-aud"],
)
def test_a_token_for_another_service_with_the_same_secret_is_refused(
    changes: dict[str, Any],
) -> None:
    claims = {k: v for k, v in _claims(**changes).items() if v is not None}
    with pytest.raises(AuthError) as info:
        verify_token(_hs(claims), JWT)
    assert info.value.status == 401


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": str(int(time.time()) + 60)},
        {"iat": str(int(time.time()))},
        {"iat": True},
        {"nbf": str(int(time.time()) - 5)},
        {"exp": float("inf")},
    ],
    ids=["exp-numeric-string", "iat-numeric-string", "iat-bool", "nbf-numeric-string", "exp-inf"],
)
def test_only_numeric_dates_are_accepted(changes: dict[str, Any]) -> None:
    # RFC 7519 section 2: a NumericDate is a JSON number; PyJWT alone accepts these (int()).
    with pytest.raises(AuthError) as info:
        verify_token(_hs(_claims(**changes)), JWT)
    assert info.value.status == 401


def test_a_float_exp_is_a_numeric_date() -> None:
    assert verify_token(_hs(_claims(exp=time.time() + 60.5)), JWT).user_id == "u_1"


# --- member info (issue #24) ---------------------------------------------------------------


def test_the_info_claim_rides_on_the_identity() -> None:
    info = {"name": "Ann", "avatar": "https://example.com/a.png", "team": ["red"]}
    assert verify_token(token("u_1", info=info), JWT).info == info
    assert verify_token(token("u_1"), JWT).info is None


@pytest.mark.parametrize("info", ["Ann", ["Ann"], 5, {"blob": "x" * 1020}])
def test_an_info_claim_that_is_not_a_small_object_refuses_the_token(info: Any) -> None:
    with pytest.raises(AuthError) as refused:
        verify_token(token("u_1", info=info), JWT)
    assert refused.value.status == 401 and "info" in str(refused.value)


def test_an_info_claim_of_exactly_1_kb_is_accepted() -> None:
    info = {"b": "x" * (1024 - len('{"b":""}'))}
    assert verify_token(token("u_1", info=info), JWT).info == info


def test_no_auth_mode_takes_a_display_name() -> None:
    assert connect_identity({"userId": "u_1", "name": "Ann Lee"}, NONE).info == {"name": "Ann Lee"}
    assert connect_identity({"name": "Zoë"}, NONE).info == {"name": "Zoë"}
    assert connect_identity({"userId": "u_1"}, NONE).info is None
    for bad in ("", " ", "x" * 65, "a\nb", "\ud800"):
        with pytest.raises(AuthError) as refused:
            connect_identity({"userId": "u_1", "name": bad}, NONE)
        assert refused.value.status == 400
