"""Presence on the real app behind the local gateway (issue #15): enter/leave events, the
``members`` command, a lost ``$disconnect`` healed by the 410 prune, and the cap.

Real sockets, so every presence and members frame received is also checked against
docs/asyncapi.yaml (the autouse fixture in conftest.py). The races (join against
``$disconnect``, a prune against a late ``$disconnect``) are in tests/functional/chalicelib/test_presence.py
and, under load, in the reliability churn (tests/reliability/test_churn.py).
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from local_gateway import EmbeddedDynamoDB, LocalGateway
from tests.e2e.helpers import REPO_ROOT
from tests.gateways import http
from tests.reliability.ddb_faults import ThrottlingProxy
from tests.wsclient import quiet, recv_json, send

pytestmark = pytest.mark.timeout(60)


def joined(ws: ClientConnection, room: str = "lobby") -> None:
    reply = send(ws, {"action": "join", "room": room})
    assert reply.get("joined") is True, reply


def event(ws: ClientConnection) -> tuple[str, str, str]:
    """The next frame, which must be a presence event: (room, enter|leave, userId)."""
    frame = recv_json(ws)
    assert frame["type"] == "presence", frame
    assert (frame["stream"], type(frame["seq"])) == (f"room:{frame['room']}", int), frame
    return frame["room"], frame["event"], frame["userId"]


def members(ws: ClientConnection, room: str = "lobby") -> dict[str, Any]:
    return send(ws, {"action": "members", "room": room, "ref": 7})


def reset(ws: ClientConnection) -> None:
    """Vanish without a close frame: SO_LINGER 0 makes close() send a TCP RST."""
    ws.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.socket.close()


def test_two_connections_of_one_user_enter_once_and_leave_once(
    gw: LocalGateway, ws_connect: Any
) -> None:
    watcher = ws_connect(gw, "userId=u_watch")
    joined(watcher)
    first = ws_connect(gw, "userId=u_1")
    second = ws_connect(gw, "userId=u_1")
    joined(first)
    assert event(watcher) == ("lobby", "enter", "u_1")
    joined(second)  # the user is there already: no second enter
    assert members(watcher) == {
        "type": "members",
        "ref": 7,
        "room": "lobby",
        "count": 2,
        "users": [{"userId": "u_1", "connections": 2}, {"userId": "u_watch", "connections": 1}],
        "truncated": False,
    }
    reply = send(first, {"action": "leave", "room": "lobby"})
    assert reply.get("left") is True, reply
    assert quiet(watcher)  # one of two connections left: still present
    second.close()  # the last one, by $disconnect
    assert event(watcher) == ("lobby", "leave", "u_1")
    assert quiet(watcher)
    assert members(watcher)["users"] == [{"userId": "u_watch", "connections": 1}]


def test_members_of_a_room_one_is_not_in_is_forbidden(gw: LocalGateway, ws_connect: Any) -> None:
    inside = ws_connect(gw, "userId=u_in")
    outside = ws_connect(gw, "userId=u_out")
    joined(inside)
    reply = members(outside)
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "forbidden", 7), reply
    assert members(inside)["count"] == 1


def test_a_resume_replays_the_presence_events_missed(gw: LocalGateway, ws_connect: Any) -> None:
    watcher = ws_connect(gw, "userId=u_watch")
    joined(watcher)
    other = ws_connect(gw, "userId=u_1")
    joined(other)
    frame = recv_json(watcher)
    watcher.close()
    gw.invocations.wait_for("$disconnect", timeout=5)
    other.close()  # u_1 leaves while the watcher is away
    gw.invocations.wait_for("$disconnect", timeout=5, count=2)

    watcher = ws_connect(gw, "userId=u_watch")
    joined(watcher)
    watcher.send(json.dumps({"action": "resume", "streams": {"room:lobby": frame["seq"]}}))
    [replay] = [recv_json(watcher)]  # three short entries: one replay frame
    assert (replay["type"], replay["stream"]) == ("replay", "room:lobby")
    replayed = replay["messages"]
    # The watcher's own leave and enter are logged like any other user's.
    assert [(f["type"], f["event"], f["userId"]) for f in replayed] == [
        ("presence", "leave", "u_watch"),
        ("presence", "leave", "u_1"),
        ("presence", "enter", "u_watch"),
    ]
    assert [f["seq"] for f in replayed] == [frame["seq"] + n for n in (1, 2, 3)]
    assert recv_json(watcher)["type"] == "resumed"


@pytest.fixture
def throttled_gw(gateway_factory: Any) -> Iterator[tuple[LocalGateway, ThrottlingProxy]]:
    """The app behind a DynamoDB proxy that can throttle (how tests make ``$disconnect`` fail:
    AWS calls it best effort, and a throttled registry is one way to lose it)."""
    dynamodb = EmbeddedDynamoDB(host="127.0.0.1", port=0)
    proxy = ThrottlingProxy(dynamodb.start())
    try:
        gw = gateway_factory(
            REPO_ROOT,
            auth_mode="none",
            dynamodb_endpoint=proxy.start(),
            credentials=dynamodb.credentials,  # the embedded server verifies its signatures
        )
        yield gw, proxy
    finally:
        proxy.throttle({})
        proxy.stop()
        dynamodb.stop()


def test_an_abrupt_drop_whose_disconnect_is_lost_leaves_with_the_410_prune(
    throttled_gw: tuple[LocalGateway, ThrottlingProxy], ws_connect: Any
) -> None:
    gw, proxy = throttled_gw
    watcher = ws_connect(gw, "userId=u_watch")
    ghost = ws_connect(gw, "userId=u_ghost")
    joined(watcher)
    joined(ghost)
    assert event(watcher) == ("lobby", "enter", "u_ghost")
    proxy.throttle({"GetItem": 1.0})  # $disconnect cannot read the connection: nothing removed
    reset(ghost)
    gw.invocations.wait_for("$disconnect", timeout=30)
    proxy.throttle({})
    assert quiet(watcher)  # no leave yet: the registry still holds the ghost
    assert [u["userId"] for u in members(watcher)["users"]] == ["u_ghost", "u_watch"]

    watcher.send(json.dumps({"action": "sendRoom", "room": "lobby", "text": "anyone?"}))
    # The prune announces the leave from inside the send, so it may come before the ack.
    frames = {f["type"]: f for f in (recv_json(watcher), recv_json(watcher))}
    assert frames["ack"]["gone"] == 1, frames  # the 410 pruned the ghost
    leave = frames["presence"]
    assert (leave["event"], leave["userId"]) == ("leave", "u_ghost"), leave
    assert members(watcher)["users"] == [{"userId": "u_watch", "connections": 1}]


def test_over_the_cap_no_events_but_members_still_counts(
    gateway_factory: Any, ws_connect: Any
) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env={"PRESENCE_MAX_MEMBERS": "2"})
    clients = [ws_connect(gw, f"userId=u{n}") for n in range(4)]
    joined(clients[0])
    joined(clients[1])
    assert event(clients[0]) == ("lobby", "enter", "u1")  # 2 users: within the cap
    joined(clients[2])  # 3 users: too many to announce
    joined(clients[3])
    clients[3].close()  # 4 -> 3 users: still over the cap
    gw.invocations.wait_for("$disconnect", timeout=5)
    assert quiet(clients[0]) and quiet(clients[1], 0.05)
    reply = members(clients[0])
    assert (reply["count"], len(reply["users"]), reply["truncated"]) == (3, 3, False), reply
    status, body = http(gw, "GET", "/rooms/lobby/members")
    assert (status, body["count"]) == (200, 3), body
