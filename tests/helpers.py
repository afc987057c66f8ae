"""Test helpers: API-Gateway-shaped events from fixtures, a fake management gateway, tokens."""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import jwt

from chalicelib.management_api import Outcome
from chalicelib.registry import Target

EVENTS_DIR = os.path.join(os.path.dirname(__file__), "events")
SECRET = "test-secret-that-is-long-enough-for-hs256!!"
# AUTH_MODE=jwt requires both (config.py); every token the tests mint carries them.
ISSUER = "https://auth.switchboard.test/"
AUDIENCE = "switchboard-test"
# The app environment of a jwt-mode stack in tests (gateway factories' ``env``).
JWT_ENV = {"JWT_SECRET": SECRET, "JWT_ISSUER": ISSUER, "JWT_AUDIENCE": AUDIENCE}


@cache
def _load(name: str) -> dict[str, Any]:
    with open(os.path.join(EVENTS_DIR, f"{name}.json"), encoding="utf-8") as fh:
        return json.load(fh)  # type: ignore[no-any-return]


def load_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(_load(name))


def connect_event(connection_id: str, query: dict[str, str] | None = None) -> dict[str, Any]:
    event = load_event("connect")
    event["requestContext"]["connectionId"] = connection_id
    event["requestContext"]["connectedAt"] = int(time.time() * 1000)
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    return event


def message_event(connection_id: str, body: Any, base64: bool = False) -> dict[str, Any]:
    event = load_event("message")
    event["requestContext"]["connectionId"] = connection_id
    event["body"] = body if isinstance(body, str) or body is None else json.dumps(body)
    event["isBase64Encoded"] = base64
    return event


def disconnect_event(connection_id: str, code: int = 1001) -> dict[str, Any]:
    event = load_event("disconnect")
    event["requestContext"]["connectionId"] = connection_id
    event["requestContext"]["disconnectStatusCode"] = code
    return event


def token(sub: str = "u_123", role: str | None = None, exp_in: int = 3600, **claims: Any) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": sub,
        "iat": now,
        "exp": now + exp_in,
        "iss": ISSUER,
        "aud": AUDIENCE,
        **claims,
    }
    if role:
        payload["role"] = role
    return jwt.encode(payload, SECRET, algorithm="HS256")


class FakeGateway:
    """Records what would be posted to each connection; answers outcomes set per connection."""

    def __init__(self) -> None:
        self.sent: dict[str, list[bytes]] = defaultdict(list)
        self.closed: list[str] = []
        self.outcomes: dict[str, Outcome] = {}
        self.endpoints: list[str | None] = []
        self._lock = threading.Lock()

    def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        with self._lock:
            self.endpoints.append(endpoint)
            outcome = self.outcomes.get(connection_id, Outcome.DELIVERED)
            if outcome is Outcome.DELIVERED:
                self.sent[connection_id].append(data)
        return outcome

    def post_many(self, targets: Sequence[Target], data: bytes) -> list[Outcome]:
        return [self.post(t.connection_id, data, t.endpoint) for t in targets]

    def start_many(self, targets: Sequence[Target], data: bytes) -> Callable[[], list[Outcome]]:
        outcomes = self.post_many(targets, data)
        return lambda: outcomes

    def close(self, connection_id: str, endpoint: str | None = None) -> Outcome:
        self.closed.append(connection_id)
        return self.outcomes.get(connection_id, Outcome.DELIVERED)

    def frames(self, connection_id: str) -> list[dict[str, Any]]:
        return [json.loads(d) for d in self.sent.get(connection_id, [])]

    def last(self, connection_id: str) -> dict[str, Any]:
        frames = self.frames(connection_id)
        assert frames, f"nothing was sent to {connection_id}"
        return frames[-1]


class FakeClock:
    """A clock that moves only when the test moves it: ``clock.now`` in seconds, ``clock()``
    reads it. The one fake clock of the suite (token buckets, pacing, deadlines, TTLs).

    It keeps whole microseconds and rounds every value it is set to: a float of epoch seconds
    has about 0.24 us of resolution, so ``clock.now += 0.1`` done on a bare float drifts (30
    steps can be microseconds off) and a rate limit counting in microseconds saw a frame
    arrive just before its token was back (the once flaky ``test_a_burst_over_the_bucket...``).
    """

    def __init__(self, now: float = 100.0) -> None:
        self._micros = round(now * 1_000_000)

    @property
    def now(self) -> float:
        return self._micros / 1_000_000

    @now.setter
    def now(self, value: float) -> None:
        self._micros = round(value * 1_000_000)

    def __call__(self) -> float:
        return self.now
