"""Push devices: the mobile device tokens a user registered, for notifications when they are
offline (docs/PUSH.md).

A mobile app registers its token with ``POST /me/devices`` (the user's own JWT as a Bearer
token) each time it starts, as APNs and FCM advise (a token can change at any launch). One item
per device in the user's partition, ``PK=DEVICES#<userId> SK=DEVICE#<deviceId>``, with
``platform``, ``token``, ``registeredAt`` and ``ttl`` = last registration +
``DEVICE_TTL_SECONDS``: a device whose app stopped registering (uninstalled, logged out without
a DELETE) expires on its own. ``deviceId`` is derived from the platform and the token (the
first 32 hex digits of their SHA-256), so registering the same token again refreshes the one
item instead of adding another, and the token itself never appears in a key or a URL.

The push notifier (app.py's ``push_notifier``) reads a user's live devices with ``for_user``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from chalicelib import keys
from chalicelib.errors import BadRequest, Forbidden
from chalicelib.table import Query, Table, query_all

# The platforms SNS mobile push names (its platform application's Platform attribute):
# APNS, APNS_SANDBOX, GCM (FCM). Lower-cased on the wire.
PLATFORMS = ("apns", "apns_sandbox", "fcm")
# APNs tokens are 64 hex digits (32 bytes) today, FCM registration tokens ~160 characters;
# both may grow, so the bound is generous but finite (the item stays far under 400 KB).
MAX_TOKEN_CHARS = 4096
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_:.\-]+$")
DEVICE_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# Devices one user may hold: enough for a phone, a tablet and their reinstalls; a bound on what
# one account can make the table store.
MAX_DEVICES_PER_USER = 20


@dataclass(frozen=True)
class Device:
    device_id: str
    user_id: str
    platform: str
    token: str
    registered_at: int  # epoch seconds
    expires_at: int  # epoch seconds (the item's ttl)

    def public(self) -> dict[str, Any]:
        """What the routes answer: never the token itself (a stolen bearer must not read it)."""
        return {
            "deviceId": self.device_id,
            "platform": self.platform,
            "registeredAt": self.registered_at,
            "expiresAt": self.expires_at,
        }


def device_id(platform: str, token: str) -> str:
    return hashlib.sha256(f"{platform}:{token}".encode()).hexdigest()[:32]


def parse_registration(body: Any) -> tuple[str, str]:
    """``(platform, token)`` from ``{"platform": ..., "token": ...}``; BadRequest otherwise."""
    if not isinstance(body, dict):
        raise BadRequest('body must be a JSON object like {"platform": "fcm", "token": "..."}')
    unknown = sorted(set(body) - {"platform", "token"})
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}: expected platform, token")
    platform = body.get("platform")
    if not isinstance(platform, str) or platform not in PLATFORMS:
        raise BadRequest(f"platform must be one of {', '.join(PLATFORMS)}")
    token = body.get("token")
    if (
        not isinstance(token, str)
        or not 1 <= len(token) <= MAX_TOKEN_CHARS
        or not _TOKEN_RE.match(token)
    ):
        raise BadRequest(
            f"token must be 1-{MAX_TOKEN_CHARS} characters of A-Z a-z 0-9 _ : . - "
            "(the APNs device token in hex, or the FCM registration token)"
        )
    return platform, token


class Devices:
    """A user's registered devices, in the one table."""

    def __init__(self, table: Table, ttl_seconds: int) -> None:
        self._table = table
        self._ttl = ttl_seconds

    def register(self, user_id: str, platform: str, token: str) -> Device:
        """Store (or refresh) a device; Forbidden past ``MAX_DEVICES_PER_USER``."""
        now = int(self._table.now())
        did = device_id(platform, token)
        key = keys.device_key(user_id, did)
        if self._table.get(key) is None:
            count = self._table.count(self._query(user_id), stop_at=MAX_DEVICES_PER_USER)
            if count >= MAX_DEVICES_PER_USER:
                raise Forbidden(
                    f"at most {MAX_DEVICES_PER_USER} devices per user: delete one first"
                )
        device = Device(did, user_id, platform, token, now, now + self._ttl)
        self._table.put(
            {
                **key,
                "userId": user_id,
                "deviceId": did,
                "platform": platform,
                "token": token,
                "registeredAt": now,
                keys.TTL: device.expires_at,
            }
        )
        return device

    def remove(self, user_id: str, device_id_: str) -> bool:
        """Forget a device; True if it was there."""
        if not DEVICE_ID_RE.match(device_id_):
            raise BadRequest("deviceId must be 32 lower-case hex digits (as registration answered)")
        old = self._table.delete(keys.device_key(user_id, device_id_), return_old=True)
        return old is not None

    def for_user(self, user_id: str) -> list[Device]:
        """The user's live devices (ttl not passed), oldest registration first."""
        devices = [
            Device(
                str(item["deviceId"]),
                user_id,
                str(item["platform"]),
                str(item["token"]),
                int(item["registeredAt"]),
                int(item[keys.TTL]),
            )
            for item in query_all(self._table, self._query(user_id))
        ]
        return sorted(devices, key=lambda d: d.registered_at)

    def _query(self, user_id: str) -> Query:
        return Query(
            partition=keys.devices_partition(user_id), sk_prefix=keys.DEVICE_PREFIX, live=True
        )
