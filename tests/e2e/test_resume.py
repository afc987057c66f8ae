"""Resume and history on the real app (issue #13): a client that dropped gets back what it
missed, from the message log, through the local gateway; HTTP history reads the same log.

Retention (``HISTORY_TTL_SECONDS``) is not waited for here: the functional tests
(tests/functional/chalicelib/test_message_log.py, test_replay.py) cover it with a fake clock.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from local_gateway import LocalGateway
from tests.gateways import http
from tests.wsclient import recv_json, send

pytestmark = pytest.mark.timeout(60)

ALICE, BOB = "u_alice", "u_bob"


def joined(ws: ClientConnection, room: str) -> None:
    reply = send(ws, {"action": "join", "room": room})
    assert reply.get("joined") is True, reply


def until_reply(
    ws: ClientConnection, kind: str, presence: list[dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages read before the first frame of type ``kind`` (live ``message`` frames and
    the entries of ``replay`` frames, in wire order), and that frame. Room streams also log
    presence events: those go to ``presence`` (none may come without)."""
    messages: list[dict[str, Any]] = []
    for _ in range(1000):
        frame = recv_json(ws)
        if frame.get("type") == kind:
            return messages, frame
        entries = frame["messages"] if frame.get("type") == "replay" else [frame]
        for entry in entries:
            if presence is not None and entry.get("type") == "presence":
                presence.append(entry)
                continue
            assert entry.get("type") == "message", frame
            messages.append(entry)
    raise AssertionError(f"no {kind} frame")


def presence_of(frame: dict[str, Any]) -> tuple[str, str]:
    assert frame["type"] == "presence", frame
    return frame["event"], frame["userId"]


def test_a_dropped_client_resumes_what_it_missed(gw: LocalGateway, ws_connect: Any) -> None:
    alice = ws_connect(gw, f"userId={ALICE}")
    bob = ws_connect(gw, f"userId={BOB}")
    joined(alice, "lobby")
    joined(bob, "lobby")
    assert presence_of(recv_json(alice)) == ("enter", BOB)
    # What alice saw live: the seq of each stream she is owed.
    send(bob, {"action": "sendRoom", "room": "lobby", "text": "before"})
    send(bob, {"action": "sendMessage", "targetUserId": ALICE, "text": "before, to you"})
    seen = [recv_json(alice), recv_json(alice)]
    assert [m["stream"] for m in seen] == ["room:lobby", f"user:{ALICE}"]
    last = {m["stream"]: m["seq"] for m in seen}

    alice.close()
    gw.invocations.wait_for("$disconnect", timeout=5)
    assert presence_of(recv_json(bob)) == ("leave", ALICE)  # logged too: room seq + 1
    room_ack = send(bob, {"action": "sendRoom", "room": "lobby", "text": "while away"})
    # A back end's push is logged whoever is connected (a WebSocket DM too: see the next test).
    status, dm_ack = http(gw, "POST", f"/users/{ALICE}/messages", {"text": "while away"})
    assert status == 200, dm_ack
    assert room_ack["delivered"] == dm_ack["delivered"] == 0  # nobody to hear them live
    assert (room_ack["stream"], room_ack["seq"]) == ("room:lobby", last["room:lobby"] + 2)
    assert (dm_ack["stream"], dm_ack["seq"]) == (f"user:{ALICE}", last[f"user:{ALICE}"] + 1)

    alice = ws_connect(gw, f"userId={ALICE}")
    joined(alice, "lobby")
    assert presence_of(recv_json(bob)) == ("enter", ALICE)
    alice.send(json.dumps({"action": "resume", "streams": last, "ref": 1}))
    events: list[dict[str, Any]] = []
    replayed, resumed = until_reply(alice, "resumed", events)
    # Her own leave and enter around the message, replayed like it (in the room's seq order).
    assert [(presence_of(e), e["seq"]) for e in events] == [
        (("leave", ALICE), room_ack["seq"] - 1),
        (("enter", ALICE), room_ack["seq"] + 1),
    ]
    assert [(m["id"], m["text"]) for m in replayed] == [
        (room_ack["id"], "while away"),
        (dm_ack["id"], "while away"),
    ]
    assert resumed["ref"] == 1
    assert resumed["streams"] == {
        "room:lobby": {
            "after": last["room:lobby"], "epoch": room_ack["epoch"], "last": room_ack["seq"] + 1,
            "replayed": 3, "truncated": False,
        },
        f"user:{ALICE}": {
            "after": last[f"user:{ALICE}"], "epoch": dm_ack["epoch"], "last": dm_ack["seq"],
            "replayed": 1, "truncated": False,
        },
    }  # fmt: skip
    # Live delivery goes on as before.
    send(bob, {"action": "sendRoom", "room": "lobby", "text": "welcome back"})
    live = recv_json(alice)
    assert (live["text"], live["seq"], "replayed" in live) == (
        "welcome back", room_ack["seq"] + 2, False,
    )  # fmt: skip


def test_a_dm_sent_while_the_target_is_away_is_resumed(gw: LocalGateway, ws_connect: Any) -> None:
    bob = ws_connect(gw, f"userId={BOB}")
    ack = send(bob, {"action": "sendMessage", "targetUserId": ALICE, "text": "while away"})
    # Logged for her resume, and acked as stored like any DM: no error, no seq (#22 item 9).
    assert (ack["type"], ack["stored"], "seq" in ack) == ("ack", True, False), ack
    alice = ws_connect(gw, f"userId={ALICE}")
    alice.send(json.dumps({"action": "resume", "streams": {f"user:{ALICE}": 0}}))
    replayed, _ = until_reply(alice, "resumed")
    assert [m["id"] for m in replayed] == [ack["id"]]


def test_replay_is_in_seq_order_per_stream(gw: LocalGateway, ws_connect: Any) -> None:
    bob = ws_connect(gw, f"userId={BOB}")
    joined(bob, "lobby")
    acks = [send(bob, {"action": "sendRoom", "room": "lobby", "text": f"#{n}"}) for n in range(6)]
    alice = ws_connect(gw, f"userId={ALICE}")
    joined(alice, "lobby")
    after = acks[1]["seq"]
    alice.send(json.dumps({"action": "resume", "streams": {"room:lobby": after}, "ref": "r"}))
    events: list[dict[str, Any]] = []
    replayed, resumed = until_reply(alice, "resumed", events)
    assert [m["seq"] for m in replayed] == [a["seq"] for a in acks[2:]]
    # Then her own enter, logged after the messages.
    assert [(presence_of(e), e["seq"]) for e in events] == [(("enter", ALICE), acks[-1]["seq"] + 1)]
    assert [m["text"] for m in replayed] == ["#2", "#3", "#4", "#5"]
    assert all(m["stream"] == "room:lobby" for m in replayed)
    assert resumed["streams"]["room:lobby"]["replayed"] == 5


def test_a_room_not_rejoined_is_refused_and_the_others_still_resume(
    gw: LocalGateway, ws_connect: Any
) -> None:
    bob = ws_connect(gw, f"userId={BOB}")
    alice = ws_connect(gw, f"userId={ALICE}")  # never in the lobby
    joined(bob, "lobby")
    room_ack = send(bob, {"action": "sendRoom", "room": "lobby", "text": "room"})
    dm_ack = send(bob, {"action": "sendMessage", "targetUserId": ALICE, "text": "dm"})
    all_ack = send(bob, {"action": "broadcastAll", "text": "everyone"})
    assert [recv_json(alice)["id"], recv_json(alice)["id"]] == [dm_ack["id"], all_ack["id"]]
    streams = {"room:lobby": 0, f"user:{ALICE}": 0, "all": 0, f"user:{BOB}": 0}
    alice.send(json.dumps({"action": "resume", "streams": streams, "ref": 9}))
    replayed, resumed = until_reply(alice, "resumed")
    assert [m["id"] for m in replayed] == [dm_ack["id"], all_ack["id"]]
    lobby, bobs = resumed["streams"]["room:lobby"], resumed["streams"][f"user:{BOB}"]
    assert lobby["after"] == 0 and "lobby" in lobby["refused"], lobby
    assert bobs["after"] == 0 and bobs["refused"], bobs
    assert resumed["streams"][f"user:{ALICE}"]["replayed"] == 1
    assert resumed["streams"]["all"]["replayed"] == 1
    assert room_ack["id"] not in {m["id"] for m in replayed}
    history = send(alice, {"action": "history", "stream": "room:lobby", "ref": 3})
    assert (history["type"], history["code"], history["ref"]) == ("error", "forbidden", 3)


def test_history_pages_with_next(gw: LocalGateway, ws_connect: Any) -> None:
    bob = ws_connect(gw, f"userId={BOB}")
    joined(bob, "lobby")
    acks = [send(bob, {"action": "sendRoom", "room": "lobby", "text": f"#{n}"}) for n in range(12)]
    pages: list[dict[str, Any]] = []
    after: int | None = 0
    for ref in range(1, 10):
        if after is None:
            break
        page = send(
            bob,
            {"action": "history", "stream": "room:lobby", "after": after, "limit": 5, "ref": ref},
        )
        assert (page["type"], page["ref"], page["stream"]) == ("history", ref, "room:lobby")
        pages.append(page)
        # ``next`` is the first seq of the next page: ask for what comes after ``next - 1``.
        after = None if page["next"] is None else page["next"] - 1
    # Seq 1 is bob's own enter (presence events are logged in the room stream), then the 12.
    assert [len(p["messages"]) for p in pages] == [5, 5, 3]
    assert [p["next"] for p in pages] == [acks[4]["seq"], acks[9]["seq"], None]
    assert {p["last"] for p in pages} == {acks[-1]["seq"]}
    [enter, *messages] = [m for p in pages for m in p["messages"]]
    assert (presence_of(enter), enter["seq"]) == (("enter", BOB), 1)
    assert [m["id"] for m in messages] == [a["id"] for a in acks]
    assert all("replayed" not in m for p in pages for m in p["messages"])


def test_http_history_returns_the_same_messages(gw: LocalGateway, ws_connect: Any) -> None:
    bob = ws_connect(gw, f"userId={BOB}")
    alice = ws_connect(gw, f"userId={ALICE}")  # a DM needs a live target
    joined(bob, "lobby")
    room = [send(bob, {"action": "sendRoom", "room": "lobby", "text": f"r{n}"}) for n in range(7)]
    dms = [
        send(bob, {"action": "sendMessage", "targetUserId": ALICE, "text": f"d{n}"})
        for n in range(3)
    ]
    after = room[1]["seq"]
    status, page = http(gw, "GET", f"/rooms/lobby/messages?after={after}&limit=3")
    assert status == 200, page
    assert (page["stream"], page["next"]) == ("room:lobby", room[5]["seq"])
    assert [m["id"] for m in page["messages"]] == [a["id"] for a in room[2:5]]
    ws_page = send(bob, {"action": "history", "stream": "room:lobby", "after": after, "limit": 3})
    assert ws_page["messages"] == page["messages"]
    status, rest = http(gw, "GET", f"/rooms/lobby/messages?after={page['next'] - 1}")
    assert status == 200 and rest["next"] is None
    assert [m["id"] for m in rest["messages"]] == [a["id"] for a in room[5:]]

    status, user_page = http(gw, "GET", f"/users/{ALICE}/messages")
    assert status == 200, user_page
    assert user_page["stream"] == f"user:{ALICE}"
    assert [(m["id"], m["text"]) for m in user_page["messages"]] == [
        (a["id"], f"d{n}") for n, a in enumerate(dms)
    ]
    assert [recv_json(alice)["id"] for _ in dms] == [a["id"] for a in dms]
    own = send(alice, {"action": "history", "stream": f"user:{ALICE}", "after": 0})
    assert own["messages"] == user_page["messages"]
    assert http(gw, "GET", "/rooms/lobby/messages?limit=0")[0] == 400
    assert http(gw, "GET", "/rooms/lobby/messages?after=x")[0] == 400
