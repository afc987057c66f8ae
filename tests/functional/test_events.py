"""Events (issue #24) through the Chalice handlers on moto: structured sends, ephemeral sends,
epochs, batched replay and recent history, over WebSocket and HTTP."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.ephemeral import EphemeralRule
from chalicelib.message import Message
from chalicelib.protocol import Scope
from chalicelib.service import Switchboard
from tests.harness import Harness

ORDER = {"id": 42, "status": "shipped", "items": [{"sku": "A-1", "qty": 2}], "paid": True}


class DynamoCalls:
    """Every DynamoDB call the app makes, with the partition keys it names."""

    OPERATIONS = ("put_item", "update_item", "delete_item", "transact_write_items",
                  "get_item", "query", "batch_get_item", "batch_write_item")  # fmt: skip

    def __init__(self, ddb: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, str]] = []
        for name in self.OPERATIONS:
            real = getattr(ddb, name)
            monkeypatch.setattr(ddb, name, self._recording(name, real))

    def _recording(self, name: str, real: Any) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append((name, json.dumps(kwargs, default=str)))
            return real(**kwargs)

        return call

    def log_writes(self) -> list[str]:
        """Writes that touch a stream's partition (its head or a message)."""
        writes = ("put_item", "update_item", "delete_item", "transact_write_items")
        return [n for n, body in self.calls if n in writes and "STREAM#" in body]


@pytest.fixture
def calls(ddb: Any, monkeypatch: pytest.MonkeyPatch) -> DynamoCalls:
    return DynamoCalls(ddb, monkeypatch)


def in_room(harness: Harness, *users: str) -> None:
    for user in users:
        harness.connect(user, userId=user)
        assert harness.send(user, {"action": "join", "room": "lobby"})["joined"] is True


def test_event_and_data_reach_the_room_history_and_replay_unchanged(harness: Harness) -> None:
    in_room(harness, "alice", "bob")
    ack = harness.send(
        "alice", {"action": "sendRoom", "room": "lobby", "event": "order.updated", "data": ORDER}
    )
    assert ack["type"] == "ack" and ack["delivered"] == 1 and ack["epoch"]
    [live] = harness.inbox("bob")
    assert (live["event"], live["data"], "text" in live) == ("order.updated", ORDER, False)
    assert (live["stream"], live["seq"], live["epoch"]) == ("room:lobby", ack["seq"], ack["epoch"])
    page = harness.send("bob", {"action": "history", "stream": "room:lobby", "latest": True})
    assert page["messages"][-1] == live
    [replay, resumed] = harness.send_raw(
        "bob", {"action": "resume", "streams": {"room:lobby": ack["seq"] - 1}}
    )
    assert replay["type"] == "replay" and replay["messages"] == [live]
    assert resumed["streams"]["room:lobby"]["replayed"] == 1


def test_text_and_data_travel_together_and_the_default_event_is_message(harness: Harness) -> None:
    harness.connect("a", userId="alice")
    harness.connect("b", userId="bob")
    harness.send("a", {"action": "sendMessage", "targetUserId": "bob", "text": "hi", "data": [1]})
    [dm] = harness.inbox("b")
    assert (dm["event"], dm["text"], dm["data"]) == ("message", "hi", [1])


def test_an_ephemeral_send_writes_nothing_to_the_log_and_is_never_replayed(
    harness: Harness, calls: DynamoCalls
) -> None:
    in_room(harness, "alice", "bob")
    logged = harness.send("alice", {"action": "sendRoom", "room": "lobby", "text": "logged"})
    calls.calls.clear()
    ack = harness.send(
        "alice",
        {"action": "sendRoom", "room": "lobby", "event": "typing", "data": True,
         "ephemeral": True, "ref": 5},
    )  # fmt: skip
    assert calls.log_writes() == []
    assert ack == {
        "type": "ack", "ref": 5, "delivered": 1, "failed": 0, "gone": 0, "id": ack["id"],
        "ephemeral": True,
    }  # fmt: skip
    typing = harness.inbox("bob")[-1]
    assert (typing["event"], typing["data"], typing["ephemeral"]) == ("typing", True, True)
    assert not {"stream", "seq", "epoch"} & set(typing)
    # Not in history, not replayed; the log's last seq did not move.
    page = harness.send("bob", {"action": "history", "stream": "room:lobby", "latest": True})
    assert page["last"] == logged["seq"] and typing["id"] not in {
        m.get("id") for m in page["messages"]
    }
    frames = harness.send_raw("bob", {"action": "resume", "streams": {"room:lobby": 0}})
    replayed = [m.get("id") for f in frames if f["type"] == "replay" for m in f["messages"]]
    assert logged["id"] in replayed and typing["id"] not in replayed


def test_ephemeral_direct_messages_and_broadcasts_too(harness: Harness, calls: DynamoCalls) -> None:
    harness.connect("a", userId="alice")
    harness.connect("b", userId="bob")
    calls.calls.clear()
    dm = harness.send(
        "a", {"action": "sendMessage", "targetUserId": "bob", "data": {"x": 1}, "ephemeral": True}
    )
    everyone = harness.send("a", {"action": "broadcastAll", "text": "t", "ephemeral": True})
    assert dm["ephemeral"] is everyone["ephemeral"] is True and dm["delivered"] == 1
    assert calls.log_writes() == []
    offline = harness.send(
        "a", {"action": "sendMessage", "targetUserId": "nobody", "text": "t", "ephemeral": True}
    )
    assert (offline["type"], offline["delivered"]) == ("ack", 0)  # nothing kept to resume


def test_an_ephemeral_send_takes_no_client_msg_id(harness: Harness) -> None:
    in_room(harness, "alice")
    reply = harness.send(
        "alice",
        {"action": "sendRoom", "room": "lobby", "text": "t", "ephemeral": True,
         "clientMsgId": "m-1", "ref": 1},
    )  # fmt: skip
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", "bad_request", 1)


def test_a_room_rule_can_forbid_or_force_ephemeral_sends(
    harness: Harness, switchboard: Switchboard, calls: DynamoCalls
) -> None:
    rules = {"typing": EphemeralRule.ALWAYS, "audit": EphemeralRule.FORBIDDEN}
    switchboard.ephemeral_rule = lambda scope, room: rules.get(room or "", EphemeralRule.ALLOWED)
    harness.connect("a", userId="alice")
    for room in ("typing", "audit"):
        harness.send("a", {"action": "join", "room": room})
    refused = harness.send(
        "a", {"action": "sendRoom", "room": "audit", "text": "t", "ephemeral": True}
    )
    assert (refused["type"], refused["code"]) == ("error", "forbidden")
    calls.calls.clear()
    forced = harness.send("a", {"action": "sendRoom", "room": "typing", "text": "t"})
    assert forced["ephemeral"] is True and calls.log_writes() == []
    with_id = harness.send(
        "a", {"action": "sendRoom", "room": "typing", "text": "t", "clientMsgId": "c-1"}
    )
    assert with_id["code"] == "bad_request"
    logged = harness.send("a", {"action": "sendRoom", "room": "audit", "text": "t"})
    assert logged["stream"] == "room:audit" and "ephemeral" not in logged


def test_resume_with_the_current_epoch_replays_and_a_stale_one_resets(harness: Harness) -> None:
    in_room(harness, "alice", "bob")
    acks = [harness.send("alice", {"action": "sendRoom", "room": "lobby", "text": f"m{i}"})
            for i in range(3)]  # fmt: skip
    epoch = acks[0]["epoch"]
    cursor = {"epoch": epoch, "seq": acks[1]["seq"]}
    [replay, resumed] = harness.send_raw(
        "bob", {"action": "resume", "streams": {"room:lobby": cursor}}
    )
    assert [m["text"] for m in replay["messages"]] == ["m2"]
    assert resumed["streams"]["room:lobby"]["epoch"] == epoch
    assert "reset" not in resumed["streams"]["room:lobby"]
    stale = {"epoch": "from-another-life", "seq": 2}
    frames = harness.send_raw("bob", {"action": "resume", "streams": {"room:lobby": stale}})
    summary = frames[-1]["streams"]["room:lobby"]
    assert summary["reset"] is True and summary["epoch"] == epoch and summary["after"] == 0
    assert (summary["replayed"], summary["next"], summary["last"]) == (0, 1, acks[-1]["seq"])
    assert [f["type"] for f in frames] == ["resumed"]  # the new numbering is paged, not replayed


def test_http_pushes_take_event_and_data_and_history_takes_latest_and_before(
    harness: Harness,
) -> None:
    in_room(harness, "bob")
    for i in range(5):
        body = {"event": "tick", "data": {"n": i}}
        response = harness.client.http.post(
            "/rooms/lobby/messages",
            headers={"Content-Type": "application/json"},
            body=json.dumps(body),
        )
        assert response.status_code == 200, response.json_body
        assert response.json_body["epoch"]
    assert [m["data"] for m in harness.inbox("bob")] == [{"n": i} for i in range(5)]
    latest = harness.client.http.get("/rooms/lobby/messages?latest=true&limit=2").json_body
    assert [m["data"]["n"] for m in latest["messages"]] == [3, 4]
    assert latest["next"] is None and latest["epoch"]
    older = harness.client.http.get(f"/rooms/lobby/messages?before={latest['prev']}&limit=2")
    assert [m["data"]["n"] for m in older.json_body["messages"]] == [1, 2]
    both = harness.client.http.get("/rooms/lobby/messages?latest=true&before=3")
    assert both.status_code == 400
    bad = harness.client.http.post(
        "/rooms/lobby/messages",
        headers={"Content-Type": "application/json"},
        body=json.dumps({"event": "tick"}),
    )
    assert bad.status_code == 400 and "data" in bad.json_body["error"]


def test_a_resume_through_the_handler_batches_in_seq_order(
    harness: Harness, switchboard: Switchboard
) -> None:
    harness.connect("bob", userId="bob")
    # Logged as the sends would log them (pushes through the handler take ~20 ms each here; the
    # e2e suite sends 500 over HTTP for real, and test_replay.py replays 500 on the log).
    for i in range(200):
        message = Message.new("u_alice", Scope.USER, f"missed {i}")
        switchboard.message_log.append("user:bob", message.to_frame())
    frames = harness.send_raw("bob", {"action": "resume", "streams": {"user:bob": 0}})
    *replays, resumed = frames
    assert len(replays) <= 2 and all(f["type"] == "replay" for f in replays)
    assert [m["seq"] for f in replays for m in f["messages"]] == list(range(1, 201))
    assert resumed["streams"]["user:bob"]["replayed"] == 200
