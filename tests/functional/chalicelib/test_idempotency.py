"""Idempotent sends on moto: a send retried with its ``clientMsgId`` is delivered once."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chalicelib.idempotency import (
    AlreadySent,
    Claim,
    ClientMsgIdReused,
    DuplicateSend,
    SendInProgress,
    SendLedger,
)
from chalicelib.message_log import LogWriteError
from chalicelib.service import Switchboard
from chalicelib.table import DynamoDB
from tests.conftest import TABLE, Clock
from tests.harness import Harness

DM = {"action": "sendMessage", "targetUserId": "bob", "text": "hi bob", "clientMsgId": "m-1"}


def alice_and_bob(harness: Harness) -> None:
    """Connection ``a`` of alice, ``b`` of bob."""
    harness.connect("a", userId="alice")
    harness.connect("b", userId="bob")


@pytest.fixture
def ledger(ddb: Any, clock: Clock) -> SendLedger:
    return SendLedger(DynamoDB(ddb, TABLE, clock=clock), ttl_seconds=600, pending_seconds=90)


@pytest.fixture
def clocked(switchboard: Switchboard, ledger: SendLedger) -> SendLedger:
    """The switchboard's ledger on the test clock."""
    switchboard.sends = ledger
    return ledger


def test_a_repeat_after_a_reconnect_gets_the_original_ack_and_is_delivered_once(
    harness: Harness,
) -> None:
    harness.connect("alice-1", userId="alice")
    harness.connect("bob", userId="bob")
    first = harness.send("alice-1", {**DM, "ref": 1})
    assert first["type"] == "ack" and first["delivered"] == 1 and "duplicate" not in first
    # The ack was lost with the connection; the client reconnects and retries the send.
    harness.disconnect("alice-1")
    harness.connect("alice-2", userId="alice")
    again = harness.send("alice-2", {**DM, "ref": 2})
    assert again == {
        "type": "ack",
        "ref": 2,
        "stored": True,
        "id": first["id"],
        "delivered": 0,
        "failed": 0,
        "gone": 0,
        "duplicate": True,
    }
    assert [m["text"] for m in harness.inbox("bob")] == ["hi bob"]
    # The log holds it once too: a resume replays one message.
    history = harness.send("bob", {"action": "history", "stream": "user:bob"})
    assert [m["id"] for m in history["messages"]] == [first["id"]]


def test_room_and_broadcast_sends_are_idempotent_too(harness: Harness) -> None:
    alice_and_bob(harness)
    for cid in ("a", "b"):
        harness.send(cid, {"action": "join", "room": "lobby"})
    room = {"action": "sendRoom", "room": "lobby", "text": "hello", "clientMsgId": "r-1"}
    everyone = {"action": "broadcastAll", "text": "news", "clientMsgId": "b-1"}
    for frame in (room, everyone):
        first = harness.send("a", frame)
        again = harness.send("a", frame)
        assert again["duplicate"] is True and (again["stream"], again["seq"]) == (
            first["stream"],
            first["seq"],
        )
    assert [m["text"] for m in harness.inbox("b")] == ["hello", "news"]


def test_two_users_may_use_the_same_client_msg_id(harness: Harness) -> None:
    harness.connect("a", userId="alice")
    harness.connect("c", userId="carol")
    harness.connect("b", userId="bob")
    from_alice = harness.send("a", DM)
    from_carol = harness.send("c", DM)
    assert "duplicate" not in from_carol and from_carol["id"] != from_alice["id"]
    assert [m["from"] for m in harness.inbox("b")] == ["alice", "carol"]


def test_a_client_msg_id_is_forgotten_after_its_ttl(
    harness: Harness, clocked: SendLedger, clock: Clock
) -> None:
    alice_and_bob(harness)
    harness.send("a", DM)
    clock.now += 599
    assert harness.send("a", DM)["duplicate"] is True
    # Past the ttl the record counts as gone (DynamoDB's TTL deletes it only eventually).
    clock.now += 2
    late = harness.send("a", DM)
    assert "duplicate" not in late and late["delivered"] == 1
    assert [m["text"] for m in harness.inbox("b")] == ["hi bob", "hi bob"]


def test_a_repeat_while_the_first_is_in_flight_is_told_to_retry(
    harness: Harness, clocked: SendLedger, clock: Clock
) -> None:
    alice_and_bob(harness)
    clocked.claim("alice", "m-1", "user:bob", "hi bob")  # another Lambda is sending it
    busy = harness.send("a", DM)
    assert busy["type"] == "error" and busy["code"] == "rate_limited", busy
    assert "in progress" in busy["message"]
    assert harness.inbox("b") == []
    # A claim still pending after the function's timeout belonged to a dead writer.
    clock.now += 91
    taken = harness.send("a", DM)
    assert taken["type"] == "ack" and taken["delivered"] == 1 and "duplicate" not in taken
    assert harness.send("a", DM)["duplicate"] is True
    assert len(harness.inbox("b")) == 1


def test_a_client_msg_id_reused_for_another_message_is_refused(harness: Harness) -> None:
    alice_and_bob(harness)
    harness.send("a", DM)
    for other in ({**DM, "text": "something else"}, {**DM, "targetUserId": "carol"}):
        refused = harness.send("a", other)
        assert refused["code"] == "bad_request" and "different message" in refused["message"]
    assert len(harness.inbox("b")) == 1


def test_a_send_the_log_refused_may_be_retried(
    harness: Harness, switchboard: Switchboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice_and_bob(harness)

    def refuse(stream: str, frame: dict[str, Any]) -> dict[str, Any]:
        raise LogWriteError("throttled")

    with monkeypatch.context() as patch:
        patch.setattr(switchboard.message_log, "append", refuse)
        failed = harness.send("a", DM)
    assert failed["code"] == "internal" and harness.inbox("b") == []
    retried = harness.send("a", DM)
    assert retried["type"] == "ack" and "duplicate" not in retried
    assert len(harness.inbox("b")) == 1


def test_a_bad_client_msg_id_is_a_bad_request(harness: Harness) -> None:
    harness.connect("a", userId="alice")
    for bad in ("", "x" * 65, "a#b", 7, "é"):
        reply = harness.send("a", {**DM, "clientMsgId": bad})
        assert reply["code"] == "bad_request" and "clientMsgId" in reply["message"], reply


def test_http_push_accepts_a_client_msg_id(harness: Harness, clocked: SendLedger) -> None:
    harness.connect("b", userId="bob")
    body = {"text": "from the back-end", "clientMsgId": "job-42"}
    first = harness.post("/users/bob/messages", body)
    again = harness.post("/users/bob/messages", body)
    assert first.status_code == again.status_code == 200
    assert again.json_body == {
        "id": first.json_body["id"],
        "stream": "user:bob",
        "seq": first.json_body["seq"],
        "epoch": first.json_body["epoch"],
        "recipients": 0,
        "delivered": 0,
        "gone": 0,
        "failed": 0,
        "duplicate": True,
    }
    assert len(harness.inbox("b")) == 1
    other = harness.post("/users/bob/messages", {**body, "text": "other"})
    assert other.status_code == 400 and "different message" in other.json_body["error"]
    bad = harness.post("/broadcast", {**body, "clientMsgId": "no spaces"})
    assert bad.status_code == 400 and "clientMsgId" in bad.json_body["error"]
    clocked.claim("local-admin", "job-43", "room:ops", "x")  # the HTTP caller's identity: pending
    busy = harness.post("/rooms/ops/messages", {"text": "x", "clientMsgId": "job-43"})
    assert busy.status_code == 409 and "in progress" in busy.json_body["error"], busy.json_body


# --- the ledger alone ----------------------------------------------------------------------


def test_of_concurrent_claims_exactly_one_wins(ddb: Any, clock: Clock) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def claim() -> None:
        ledger = SendLedger(DynamoDB(ddb, TABLE, clock=clock))  # as separate containers would
        try:
            ledger.claim("alice", "m-1", "room:a", "x")
            outcome = "won"
        except DuplicateSend as exc:
            outcome = type(exc).__name__
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["SendInProgress"] * 7 + ["won"]


def test_a_completed_claim_answers_already_sent(ledger: SendLedger) -> None:
    claim = ledger.claim("alice", "m-1", "room:a", "x")
    assert ledger.complete(claim, {"id": "abc", "seq": 7})
    with pytest.raises(AlreadySent) as caught:
        ledger.claim("alice", "m-1", "room:a", "x")
    assert (caught.value.message_id, caught.value.stream, caught.value.seq) == ("abc", "room:a", 7)
    with pytest.raises(ClientMsgIdReused):
        ledger.claim("alice", "m-1", "room:b", "x")


def test_a_taken_over_claim_cannot_be_completed_or_released_by_its_old_owner(
    ledger: SendLedger, clock: Clock
) -> None:
    old = ledger.claim("alice", "m-1", "room:a", "x")
    clock.now += 91
    new = ledger.claim("alice", "m-1", "room:a", "x")
    assert isinstance(new, Claim) and new.at > old.at
    ledger.release(old)  # no effect: the claim is no longer its
    assert not ledger.complete(old, {"id": "old", "seq": 1})
    assert ledger.complete(new, {"id": "new", "seq": 2})
    with pytest.raises(AlreadySent) as caught:
        ledger.claim("alice", "m-1", "room:a", "x")
    assert caught.value.message_id == "new"


def test_a_released_claim_may_be_claimed_again(ledger: SendLedger) -> None:
    claim = ledger.claim("alice", "m-1", "room:a", "x")
    with pytest.raises(SendInProgress):
        ledger.claim("alice", "m-1", "room:a", "x")
    ledger.release(claim)
    assert isinstance(ledger.claim("alice", "m-1", "room:a", "x"), Claim)
