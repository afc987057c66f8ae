"""Token verification for ``$connect`` (``?token=``) and the HTTP push routes (Bearer)."""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chalicelib.access import PermissionClaims, permission_claims
from chalicelib.capabilities import Capabilities, ClaimError
from chalicelib.config import Settings
from chalicelib.protocol import encodable, valid_room, valid_user_id

# Clock skew tolerated between the token issuer and Lambda, for ``iat`` and ``nbf`` in the future.
CLOCK_SKEW_SECONDS = 60
# The registered claims that are NumericDates (RFC 7519 section 4.1.4-4.1.6).
NUMERIC_DATE_CLAIMS = ("exp", "iat", "nbf")
# The ``info`` claim (Pusher's ``user_info``): what the room sees of a member, at most this many
# bytes of compact JSON. It rides on the connection item, every presence item of the user and
# each ``members`` entry, so it is kept small.
MAX_INFO_BYTES = 1024
MAX_NAME_CHARS = 64


class AuthError(Exception):
    """The caller is refused: ``status`` 401 (not authenticated), 403 (not allowed) or 400."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Identity:
    user_id: str
    role: str | None = None
    anonymous: bool = False
    # The token's ``exp`` (epoch seconds); None without a token (AUTH_MODE=none).
    expires_at: int | None = None
    # What others see of the user in presence events and ``members`` answers: the token's
    # ``info`` claim, or ``{"name": …}`` from ``?name=`` in AUTH_MODE=none.
    info: dict[str, Any] | None = None
    # What the token says about rooms (access.py): capabilities, rooms to join at $connect,
    # and the claims an authorizer function receives.
    permissions: PermissionClaims = field(default_factory=PermissionClaims)

    @property
    def capabilities(self) -> Capabilities:
        return self.permissions.capabilities

    @property
    def auto_join(self) -> tuple[str, ...]:
        return self.permissions.auto_join

    @property
    def claims(self) -> Mapping[str, Any]:
        return self.permissions.claims

    def is_admin(self, admin_role: str) -> bool:
        return self.role == admin_role


def verify_token(token: str, settings: Settings) -> Identity:
    """Verify a JWT: the pinned algorithm only; ``exp``, ``iat`` and ``sub`` required, and
    ``iss``/``aud`` when the settings name them (``Settings.from_env`` requires both in jwt mode);
    ``exp``/``iat``/``nbf`` JSON numbers; ``iat`` not in the future (beyond the clock skew) and
    ``exp - iat`` at most ``jwt_max_lifetime_seconds``."""
    if not token:
        raise AuthError("missing token")
    if settings.jwt_secret is None:
        raise AuthError("token verification is not configured")
    required = ["exp", "iat", "sub"]
    # PyJWT checks iss/aud only when present unless they are required too.
    required += ["iss"] if settings.jwt_issuer else []
    required += ["aud"] if settings.jwt_audience else []
    options: Any = {"require": required}
    import jwt  # here, not at the top: AUTH_MODE=none never pays for importing PyJWT

    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=[settings.jwt_algorithm],
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            options=options,
            leeway=CLOCK_SKEW_SECONDS,
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.PyJWTError:
        raise AuthError("invalid token") from None
    # RFC 7519 section 2 defines a NumericDate as a JSON number. PyJWT converts with int(), so
    # it also takes "1796540244" (a string) and true (a bool) for exp/iat/nbf: refused here.
    for name in NUMERIC_DATE_CLAIMS:
        if name in claims and not _numeric_date(claims[name]):
            raise AuthError("invalid token")
    # Its leeway also stretches exp; the skew is for iat/nbf only, so a token is never
    # honoured past its own exp.
    expires_at, issued_at = int(claims["exp"]), int(claims["iat"])
    if expires_at <= time.time():
        raise AuthError("token expired")
    if expires_at - issued_at > settings.jwt_max_lifetime_seconds:
        raise AuthError(
            f"token lifetime exceeds {settings.jwt_max_lifetime_seconds} seconds (exp - iat)"
        )
    sub = claims.get("sub")
    if not valid_user_id(sub):
        raise AuthError("token subject is not a valid user id")
    try:
        permissions = permission_claims(claims, valid_room)
    except ClaimError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    return Identity(
        user_id=str(sub),
        role=_role(claims, settings.admin_role),
        expires_at=expires_at,
        info=info_claim(claims.get("info")),
        permissions=permissions,
    )


def _numeric_date(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def info_claim(value: Any) -> dict[str, Any] | None:
    """The ``info`` claim if it is a JSON object of at most ``MAX_INFO_BYTES``; a token with
    any other ``info`` is refused (a bad claim is the issuer's bug: say so, don't drop it)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise AuthError("the token's info claim must be a JSON object")
    try:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    except (TypeError, ValueError):
        raise AuthError("the token's info claim must be JSON") from None
    if size > MAX_INFO_BYTES:
        raise AuthError(f"the token's info claim is over {MAX_INFO_BYTES} bytes")
    return value


def display_name(value: str | None) -> dict[str, Any] | None:
    """``?name=`` (AUTH_MODE=none) as an info object: 1-64 printable characters."""
    if value is None:
        return None
    if not value.strip() or len(value) > MAX_NAME_CHARS:
        raise AuthError(f"name must be 1-{MAX_NAME_CHARS} characters", status=400)
    if not encodable(value) or not value.isprintable():
        raise AuthError("name must be printable text", status=400)
    return {"name": value}


def _role(claims: dict[str, Any], admin_role: str) -> str | None:
    role = claims.get("role")
    if isinstance(role, str):
        return role
    roles = claims.get("roles")
    if isinstance(roles, list) and admin_role in roles:
        return admin_role
    return None


def connect_identity(query: dict[str, str] | None, settings: Settings) -> Identity:
    """Who a new WebSocket connection is, from its query string."""
    query = query or {}
    if settings.auth_mode == "jwt":
        return verify_token(query.get("token", ""), settings)
    user_id = query.get("userId")
    info = display_name(query.get("name"))
    if user_id is None:
        return Identity(user_id=f"guest-{secrets.token_hex(4)}", anonymous=True, info=info)
    if not valid_user_id(user_id):
        raise AuthError("userId must be 1-128 characters of A-Z a-z 0-9 _ . : @ | + -", status=400)
    return Identity(user_id=user_id, info=info)


def require_admin_bearer(authorization: str | None, settings: Settings) -> Identity:
    """The HTTP push routes: ``Authorization: Bearer <jwt>`` with the admin role."""
    if settings.auth_mode != "jwt":
        return Identity(user_id="local-admin", role=settings.admin_role)
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing bearer token")
    identity = verify_token(token.strip(), settings)
    if not identity.is_admin(settings.admin_role):
        raise AuthError("admin role required", status=403)
    return identity


def require_user_bearer(
    authorization: str | None, settings: Settings, local_user: str | None = None
) -> Identity:
    """The user's own routes (``/me/...``): ``Authorization: Bearer <jwt>`` of the user
    themselves, any role: the identity is the token's ``sub``. With ``AUTH_MODE=none`` (local
    only) the user names themselves with ``?userId=``, as a WebSocket client does."""
    if settings.auth_mode != "jwt":
        if local_user is None:
            raise AuthError("AUTH_MODE=none: name the user with ?userId=", status=400)
        if not valid_user_id(local_user):
            raise AuthError(
                "userId must be 1-128 characters of A-Z a-z 0-9 _ . : @ | + -", status=400
            )
        return Identity(user_id=local_user)
    if local_user is not None:
        raise AuthError("?userId= is for AUTH_MODE=none only; the token names the user", 400)
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("missing bearer token")
    return verify_token(token.strip(), settings)
