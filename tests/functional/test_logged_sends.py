"""Sends are logged before they are fanned out: the Chalice handlers on moto, end to end.

The issue this covers: alice drops, bob sends to the room and to her, alice reconnects,
rejoins, resumes, and gets both (at most once before: nothing).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.management_api import Outcome
from chalicelib.message_log import MessageLog
from chalicelib.service import Switchboard
from tests.harness import Harness


def test_alice_gets_what_she_missed_after_reconnect_rejoin_and_resume(harness: Harness) -> None:
    harness.connect("alice-1", userId="alice")
    harness.connect("bob", userId="bob")
    harness.send("alice-1", {"action": "join", "room": "lobby"})
    harness.send("bob", {"action": "join", "room": "lobby"})
    first = harness.send("bob", {"action": "sendRoom", "room": "lobby", "text": "before"})
    # Seqs 1 and 2 of the room's stream are alice's and bob's presence (enter) events.
    assert (first["stream"], first["seq"]) == ("room:lobby", 3)
    [seen] = harness.inbox("alice-1")
    assert (seen["stream"], seen["seq"]) == ("room:lobby", 3)
    dm_before = harness.send("bob", {"action": "sendMessage", "targetUserId": "alice", "text": "x"})
    # A DM's ack says it was stored, never the recipient stream's seq (#22 item 9).
    assert dm_before["stored"] is True and "seq" not in dm_before

    # alice vanishes without a $disconnect: her connection is pruned by the next send's 410.
    harness.gateway.outcomes["alice-1"] = Outcome.GONE
    missed_room = harness.send("bob", {"action": "sendRoom", "room": "lobby", "text": "while away"})
    missed_dm = harness.send(
        "bob", {"action": "sendMessage", "targetUserId": "alice", "text": "are you there?"}
    )
    assert missed_room["seq"] == 4, missed_room  # then 5: alice's leave, announced by the prune
    # Nobody is connected as alice now: logged all the same, and acked like any DM.
    assert missed_dm["type"] == "ack" and missed_dm["stored"] is True, missed_dm
    assert missed_dm["delivered"] == 0  # AUTH_MODE=none: receipts on by default

    harness.connect("alice-2", userId="alice")
    harness.send("alice-2", {"action": "join", "room": "lobby"})
    frames = harness.send_raw(
        "alice-2",
        {"action": "resume", "streams": {"room:lobby": 3, "user:alice": 1, "all": 0}, "ref": 9},
    )
    posts, resumed = frames[:-1], frames[-1]
    # One replay frame per stream, its messages in seq order.
    assert [(p["type"], p["stream"]) for p in posts] == [
        ("replay", "room:lobby"),
        ("replay", "user:alice"),
    ]
    replayed = [m for p in posts for m in p["messages"]]
    assert [
        (f["stream"], f["seq"], f.get("text") or f"{f['event']} {f['userId']}") for f in replayed
    ] == [
        ("room:lobby", 4, "while away"),
        ("room:lobby", 5, "leave alice"),
        ("room:lobby", 6, "enter alice"),  # alice-2's own join, logged before the resume
        ("user:alice", 2, "are you there?"),
    ]
    assert resumed["type"] == "resumed" and resumed["ref"] == 9
    assert resumed["streams"]["room:lobby"]["replayed"] == 3
    # Nothing was ever broadcast: no epoch yet, and the read created none.
    assert resumed["streams"]["all"] == {
        "after": 0, "epoch": None, "last": 0, "replayed": 0, "truncated": False,
    }  # fmt: skip


def test_resume_of_a_room_not_rejoined_or_another_user_is_refused(harness: Harness) -> None:
    harness.connect("a", userId="alice")
    frames = harness.send_raw(
        "a", {"action": "resume", "streams": {"room:lobby": 0, "user:bob": 0, "all": 0}}
    )
    [resumed] = frames
    assert "refused" in resumed["streams"]["room:lobby"]
    assert "refused" in resumed["streams"]["user:bob"]
    assert "refused" not in resumed["streams"]["all"]


def test_history_over_http_and_websocket_pages_the_same_log(harness: Harness) -> None:
    harness.connect("a", userId="alice")
    harness.send("a", {"action": "join", "room": "lobby"})
    for i in range(7):
        harness.send("a", {"action": "sendRoom", "room": "lobby", "text": f"m{i}"})
    page = harness.send(
        "a", {"action": "history", "stream": "room:lobby", "after": 2, "limit": 3, "ref": 1}
    )
    assert [m["seq"] for m in page["messages"]] == [3, 4, 5] and page["next"] == 6
    http = harness.client.http.get("/rooms/lobby/messages?after=2&limit=3").json_body
    assert http["messages"] == page["messages"] and http["next"] == 6
    assert harness.client.http.get("/rooms/lobby/messages?after=5").json_body["next"] is None
    users = harness.client.http.get("/users/alice/messages").json_body
    assert users["messages"] == [] and users["stream"] == "user:alice"
    bad_queries = ("?after=-1", "?limit=0", "?limit=101", "?after=x", "?after=%EF%BC%91")
    for bad in (*bad_queries, "?after=%201", "?after=1_0", "?after=" + "9" * 5000, "?afte=3"):
        response = harness.client.http.get(f"/rooms/lobby/messages{bad}")
        assert response.status_code == 400, bad
    assert harness.client.http.get("/rooms/no%23pe/messages").status_code == 400


def test_http_push_answers_with_stream_and_seq(harness: Harness) -> None:
    harness.connect("a", userId="alice")
    response = harness.client.http.post(
        "/users/alice/messages",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"text": "hi"}),
    )
    body = response.json_body
    assert (body["stream"], body["seq"], body["delivered"]) == ("user:alice", 1, 1)
    [msg] = harness.inbox("a")
    assert (msg["stream"], msg["seq"], msg["id"]) == ("user:alice", 1, body["id"])


@pytest.fixture
def broken_log(switchboard: Switchboard, ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ddb.update_item

    def update_item(**kwargs: Any) -> Any:
        if kwargs["Key"]["PK"]["S"].startswith("STREAM#"):
            raise RuntimeError("the log's partition is unavailable")
        return real(**kwargs)

    monkeypatch.setattr(ddb, "update_item", update_item)
    assert isinstance(switchboard.message_log, MessageLog)


def test_a_message_the_log_cannot_take_is_not_sent(harness: Harness, broken_log: None) -> None:
    harness.connect("a", userId="alice")
    harness.connect("b", userId="bob")
    harness.send("a", {"action": "join", "room": "lobby"})
    harness.send("b", {"action": "join", "room": "lobby"})
    reply = harness.send("a", {"action": "sendRoom", "room": "lobby", "text": "lost?", "ref": 4})
    assert reply["type"] == "error" and reply["code"] == "internal" and reply["ref"] == 4
    assert "nothing was sent" in reply["message"]
    assert harness.inbox("b") == []
    response = harness.client.http.post(
        "/broadcast", headers={"Content-Type": "application/json"}, body='{"text":"x"}'
    )
    assert response.status_code == 503 and "nothing was sent" in response.json_body["error"]
    assert harness.inbox("b") == []
