from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from chalicelib.auth import AuthError, connect_identity, require_admin_bearer, verify_token
from chalicelib.config import Settings
from tests.helpers import SECRET, token

JWT = Settings(table_name="t", auth_mode="jwt", jwt_secret=SECRET)
NONE = Settings(table_name="t", auth_mode="none")


def test_valid_token_gives_the_subject_and_role() -> None:
    identity = verify_token(token("u_9", role="admin"), JWT)
    assert identity.user_id == "u_9" and identity.is_admin("admin")


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        token(exp_in=-10),
        jwt.encode(
            {"sub": "u_1", "exp": int(time.time()) + 60},
            "another-secret-of-sufficient-length!!",
            algorithm="HS256",
        ),
        jwt.encode({"sub": "u_1"}, SECRET, algorithm="HS256"),  # no exp
        jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),  # no sub
        jwt.encode({"sub": "u#1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
        _b64({"alg": "none", "typ": "JWT"})
        + "."
        + _b64({"sub": "u_1", "exp": int(time.time()) + 60})
        + ".",
        jwt.encode({"sub": "u_1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS512"),
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
    ],
)
def test_bad_tokens_are_refused_with_401(bad: str) -> None:
    with pytest.raises(AuthError) as info:
        connect_identity({"token": bad}, JWT)
    assert info.value.status == 401


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
