"""A connection's rights end with the token it was made with (security issue #12, finding 3)."""

from __future__ import annotations

import json

from chalicelib.registry import Registry
from tests.conftest import Clock, make_switchboard
from tests.harness import Harness
from tests.helpers import FakeGateway, connect_event, message_event, token

EXPIRED = {
    "type": "error",
    # Its own code since the permissions issue (it was "forbidden"): the client refreshes.
    "code": "token_expired",
    "message": "token expired; reconnect with a fresh token",
}


def test_an_expired_admin_token_can_no_longer_broadcast_and_is_closed(
    jwt_harness: Harness, gateway: FakeGateway, registry: Registry, clock: Clock
) -> None:
    assert jwt_harness.connect("admin", token=token("boss", role="admin", exp_in=60)) == {
        "statusCode": 200
    }
    assert jwt_harness.connect("fan", token=token("u_2")) == {"statusCode": 200}
    ack = jwt_harness.send("admin", {"action": "broadcastAll", "text": "hi", "ref": 1})
    assert ack["type"] == "ack" and ack["delivered"] == 1
    record = registry.get("admin")
    assert record is not None and record.token_expires_at is not None

    clock.now = record.token_expires_at  # the token's exp has come
    reply = jwt_harness.send("admin", {"action": "broadcastAll", "text": "again", "ref": 2})
    assert reply == {**EXPIRED, "ref": 2}
    assert gateway.closed == ["admin"]
    assert registry.get("admin") is None
    assert [json.loads(d)["text"] for d in gateway.sent["fan"]] == ["hi"]


def test_any_frame_after_expiry_even_a_ping_gets_the_error_and_the_close(
    jwt_harness: Harness, gateway: FakeGateway, registry: Registry, clock: Clock
) -> None:
    assert jwt_harness.connect("a", token=token("u_1", exp_in=60)) == {"statusCode": 200}
    assert jwt_harness.send("a", {"action": "ping"})["type"] == "pong"
    clock.now += 61
    assert jwt_harness.send("a", {"action": "ping"}) == EXPIRED
    assert gateway.closed == ["a"] and registry.get("a") is None


def test_a_live_token_is_left_alone(
    jwt_harness: Harness, gateway: FakeGateway, registry: Registry, clock: Clock
) -> None:
    assert jwt_harness.connect("a", token=token("u_1", exp_in=600)) == {"statusCode": 200}
    clock.now += 300
    assert jwt_harness.send("a", {"action": "whoami"})["type"] == "identity"
    assert gateway.closed == [] and registry.get("a") is not None


def test_without_auth_there_is_no_token_expiry(
    registry: Registry, gateway: FakeGateway, clock: Clock
) -> None:
    switchboard = make_switchboard(registry, gateway)
    switchboard.on_connect(connect_event("a", {"userId": "u_1"}))
    record = registry.get("a")
    assert record is not None and record.token_expires_at is None
    clock.now = record.ttl - 1  # the last second of the connection's ttl: no other expiry
    switchboard.on_message(message_event("a", {"action": "whoami"}))
    assert gateway.last("a")["type"] == "identity" and gateway.closed == []
