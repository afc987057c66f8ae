"""A connection's rights end with the token it was made with (security issue #12, finding 3)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.registry import Registry
from tests.conftest import Clock, make_switchboard
from tests.helpers import FakeGateway, connect_event, message_event, token

EXPIRED = {
    "type": "error",
    "code": "forbidden",
    "message": "token expired; reconnect with a fresh token",
}


@pytest.fixture
def client(registry: Registry, gateway: FakeGateway) -> Iterator[Client]:
    app_module.reset_switchboard(make_switchboard(registry, gateway, auth_mode="jwt"))
    try:
        with Client(app_module.app) as chalice_client:
            yield chalice_client
    finally:
        app_module.reset_switchboard(None)


def connect(client: Client, cid: str, jwt: str) -> None:
    response = client.lambda_.invoke("connect", connect_event(cid, {"token": jwt})).payload
    assert response == {"statusCode": 200}


def send(client: Client, gateway: FakeGateway, cid: str, frame: dict[str, Any]) -> Any:
    before = len(gateway.sent.get(cid, []))
    client.lambda_.invoke("message", message_event(cid, frame))
    replies = [f for f in gateway.frames(cid)[before:] if f["type"] != "presence"]
    assert len(replies) == 1, replies
    return replies[0]


def test_an_expired_admin_token_can_no_longer_broadcast_and_is_closed(
    client: Client, gateway: FakeGateway, registry: Registry, clock: Clock
) -> None:
    connect(client, "admin", token("boss", role="admin", exp_in=60))
    connect(client, "fan", token("u_2"))
    ack = send(client, gateway, "admin", {"action": "broadcastAll", "text": "hi", "ref": 1})
    assert ack["type"] == "ack" and ack["delivered"] == 1
    record = registry.get("admin")
    assert record is not None and record.token_expires_at is not None

    clock.now = record.token_expires_at  # the token's exp has come
    reply = send(client, gateway, "admin", {"action": "broadcastAll", "text": "again", "ref": 2})
    assert reply == {**EXPIRED, "ref": 2}
    assert gateway.closed == ["admin"]
    assert registry.get("admin") is None
    assert [json.loads(d)["text"] for d in gateway.sent["fan"]] == ["hi"]


def test_any_frame_after_expiry_even_a_ping_gets_the_error_and_the_close(
    client: Client, gateway: FakeGateway, registry: Registry, clock: Clock
) -> None:
    connect(client, "a", token("u_1", exp_in=60))
    assert send(client, gateway, "a", {"action": "ping"})["type"] == "pong"
    clock.now += 61
    assert send(client, gateway, "a", {"action": "ping"}) == EXPIRED
    assert gateway.closed == ["a"] and registry.get("a") is None


def test_a_live_token_is_left_alone(
    client: Client, gateway: FakeGateway, registry: Registry, clock: Clock
) -> None:
    connect(client, "a", token("u_1", exp_in=600))
    clock.now += 300
    assert send(client, gateway, "a", {"action": "whoami"})["type"] == "identity"
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
