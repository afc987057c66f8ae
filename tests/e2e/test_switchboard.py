"""switchboard itself on the local gateway: real sockets, real handlers, embedded DynamoDB."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from local_gateway import LocalGateway
from tests.e2e.helpers import REPO_ROOT
from tests.gateways import http, table_items, wait_until
from tests.helpers import JWT_ENV, token
from tests.wsclient import recv_json, send

pytestmark = pytest.mark.timeout(60)


def registry_items(gw: LocalGateway) -> int:
    """Connection, slot, membership and presence items (the message log's streams stay by
    design)."""
    return sum(1 for i in table_items(gw) if not i["PK"]["S"].startswith("STREAM#"))


def test_two_users_exchange_the_seed_frame(gw: LocalGateway, ws_connect: Any) -> None:
    alice = ws_connect(gw, "userId=u_123")
    bob = ws_connect(gw, "userId=u_456")
    ack = send(alice, {"action": "sendMessage", "targetUserId": "u_456", "text": "hi", "ref": 1})
    assert (ack["type"], ack["ref"], ack["delivered"], ack["failed"]) == ("ack", 1, 1, 0)
    message = recv_json(bob)
    assert (message["type"], message["from"], message["scope"], message["text"]) == (
        "message", "u_123", "user", "hi",
    )  # fmt: skip
    reply = send(bob, {"action": "sendMessage", "targetUserId": "u_123", "text": "hello back"})
    assert reply["delivered"] == 1 and recv_json(alice)["text"] == "hello back"


def test_rooms_and_broadcast(gw: LocalGateway, ws_connect: Any) -> None:
    a, b, c = (ws_connect(gw, f"userId=u{i}") for i in range(3))
    assert send(a, {"action": "join", "room": "lobby"})["joined"] is True
    send(b, {"action": "join", "room": "lobby"})
    assert recv_json(a)["type"] == "presence"  # u1 hears u2 enter
    assert send(a, {"action": "sendRoom", "room": "lobby", "text": "room hi"})["delivered"] == 1
    assert recv_json(b)["room"] == "lobby"
    assert send(c, {"action": "sendRoom", "room": "lobby", "text": "x"})["code"] == "forbidden"
    assert send(c, {"action": "broadcastAll", "text": "everyone"})["delivered"] == 2
    assert recv_json(a)["scope"] == "all" and recv_json(b)["scope"] == "all"
    assert send(a, {"action": "whoami"})["rooms"] == ["lobby"]


def test_bad_frames_get_error_frames_and_the_socket_stays_up(
    gw: LocalGateway, ws_connect: Any
) -> None:
    ws = ws_connect(gw, "userId=u1")
    assert send(ws, {"action": "fly"})["code"] == "unknown_action"
    ws.send("{{{")
    assert recv_json(ws)["code"] == "bad_json"
    assert send(ws, {"action": "ping", "ref": "still-here"}) == {
        "type": "pong",
        "ref": "still-here",
    }


def test_a_binary_frame_closes_with_1003_and_cleans_the_registry(
    gw: LocalGateway, ws_connect: Any
) -> None:
    """API Gateway rejects binary frames and disconnects with 1003 (developer guide, binary
    media types for WebSocket APIs); $disconnect runs with that code and cleans up."""
    ws = ws_connect(gw, "userId=u1")
    send(ws, {"action": "join", "room": "r"})
    cid = send(ws, {"action": "whoami"})["connectionId"]
    assert registry_items(gw) == 4  # the connection, its slot, its membership, u1's presence
    ws.send(b"\x00\xff binary")
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    [record] = gw.invocations.wait_for("$disconnect", cid, timeout=5)
    assert record.event["requestContext"]["disconnectStatusCode"] == 1003
    wait_until(lambda: registry_items(gw) == 0)


def test_http_push_connections_and_kick(gw: LocalGateway, ws_connect: Any) -> None:
    a = ws_connect(gw, "userId=u1")
    b = ws_connect(gw, "userId=u2")
    send(b, {"action": "join", "room": "ops"})
    assert http(gw, "GET", "/health")[0] == 200
    status, report = http(gw, "POST", "/broadcast", {"text": "from the back end"})
    assert status == 200 and report["delivered"] == 2
    assert recv_json(a)["text"] == recv_json(b)["text"] == "from the back end"
    status, report = http(gw, "POST", "/rooms/ops/messages", {"text": "ops only"})
    assert report["delivered"] == 1 and recv_json(b)["text"] == "ops only"
    assert http(gw, "POST", "/users/u1/messages", {"txt": "oops"})[0] == 400
    listing = http(gw, "GET", "/connections")[1]
    assert listing["count"] == 2 and listing["byUser"] == {"u1": 1, "u2": 1}
    whoami = send(a, {"action": "whoami"})
    assert (
        http(gw, "DELETE", f"/connections/{urllib.request.quote(whoami['connectionId'], safe='')}")[
            0
        ]
        == 204
    )
    with pytest.raises(ConnectionClosed):
        a.recv(timeout=5)
    wait_until(lambda: http(gw, "GET", "/connections")[1]["count"] == 1)


def test_closing_cleans_the_registry_and_later_sends_are_410_free(
    gw: LocalGateway, ws_connect: Any
) -> None:
    a = ws_connect(gw, "userId=u1")
    b = ws_connect(gw, "userId=u2")
    send(a, {"action": "join", "room": "r"})
    send(b, {"action": "join", "room": "r"})
    assert registry_items(gw) == 8  # two connections and slots, memberships, users present
    b.close()
    gw.invocations.wait_for("$disconnect", timeout=5)
    wait_until(lambda: registry_items(gw) == 4)
    assert [recv_json(a)["event"] for _ in range(2)] == ["enter", "leave"]  # u2's presence
    ack = send(a, {"action": "sendRoom", "room": "r", "text": "anyone?"})
    assert (ack["delivered"], ack["gone"], ack["failed"]) == (0, 0, 0)
    a.close()
    wait_until(lambda: registry_items(gw) == 0)


def test_jwt_mode_refuses_bad_tokens_at_the_handshake(
    gateway_factory: Any, ws_connect: Any
) -> None:
    from websockets.exceptions import InvalidStatus

    gw = gateway_factory(REPO_ROOT, auth_mode="jwt", env=JWT_ENV)
    for query in ("", "userId=u1", "token=garbage", f"token={token(exp_in=-5)}"):
        with pytest.raises(InvalidStatus) as refused:
            ws_connect(gw, query)
        assert refused.value.response.status_code == 401
    user = ws_connect(gw, f"token={token('u_1')}")
    admin = ws_connect(gw, f"token={token('ops', role='admin')}")
    assert send(user, {"action": "broadcastAll", "text": "x"})["code"] == "forbidden"
    assert send(admin, {"action": "broadcastAll", "text": "x"})["delivered"] == 1
    assert recv_json(user)["from"] == "ops"
    assert http(gw, "POST", "/broadcast", {"text": "x"})[0] == 401
    assert http(gw, "POST", "/broadcast", {"text": "x"}, f"Bearer {token('u_1')}")[0] == 403
    assert registry_items(gw) == 4  # two connections and their per-user slots
