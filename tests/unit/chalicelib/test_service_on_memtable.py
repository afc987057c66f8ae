"""Switchboard itself on the in-memory table and a fake management API: fast, no moto, no sockets."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.management_api import Outcome
from chalicelib.service import Switchboard
from tests.conftest import Clock
from tests.helpers import FakeGateway, connect_event, disconnect_event, message_event
from tests.unit.chalicelib import memory
from tests.unit.chalicelib.memory import START


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def sb(clock: Clock, gateway: FakeGateway) -> Switchboard:
    return memory.switchboard(clock, gateway)


def connect(sb: Switchboard, clock: Clock, cid: str, user: str) -> int:
    event = connect_event(cid, {"userId": user})
    event["requestContext"]["connectedAt"] = memory.ms(clock)  # the test's clock, not the host's
    return sb.on_connect(event).status


def send(sb: Switchboard, gateway: FakeGateway, cid: str, frame: dict[str, Any]) -> dict[str, Any]:
    """The one reply ``frame`` gets (its ack or error), skipping what else reached ``cid``."""
    before = len(gateway.frames(cid))
    assert sb.on_message(message_event(cid, frame)).status == 200
    replies = [f for f in gateway.frames(cid)[before:] if f.get("ref") == frame.get("ref")]
    assert len(replies) == 1, gateway.frames(cid)[before:]
    return replies[0]


def kinds(gateway: FakeGateway, cid: str, kind: str) -> list[dict[str, Any]]:
    return [f for f in gateway.frames(cid) if f["type"] == kind]


def test_connect_registers_and_whoami_reads_it_back(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    assert connect(sb, clock, "a", "u_1") == 200
    assert connect(sb, clock, "a", "u_2") == 409  # the id is taken
    me = send(sb, gateway, "a", {"action": "whoami", "ref": 1})
    assert (me["type"], me["connectionId"], me["userId"], me["rooms"]) == (
        "identity", "a", "u_1", [],
    )  # fmt: skip


def test_join_announces_the_enter_to_the_others_and_send_room_reaches_them(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    for cid, user in (("a", "u_a"), ("b", "u_b")):
        connect(sb, clock, cid, user)
        assert send(sb, gateway, cid, {"action": "join", "room": "lobby", "ref": 1})["joined"]
    assert [(p["event"], p["userId"]) for p in kinds(gateway, "a", "presence")] == [
        ("enter", "u_b")
    ]
    ack = send(sb, gateway, "a", {"action": "sendRoom", "room": "lobby", "text": "hi", "ref": 2})
    assert (ack["type"], ack["delivered"], ack["stream"], ack["seq"]) == (
        "ack",
        1,
        "room:lobby",
        3,
    )  # fmt: skip  (seqs 1 and 2: the two enters)
    [message] = kinds(gateway, "b", "message")
    assert (message["text"], message["from"], message["seq"]) == ("hi", "u_a", 3)
    assert kinds(gateway, "a", "message") == []  # not echoed to the sender


def test_send_message_reaches_every_connection_of_the_user_and_is_stored_for_anyone(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    connect(sb, clock, "a", "u_a")
    connect(sb, clock, "b1", "u_b")
    connect(sb, clock, "b2", "u_b")
    ack = send(sb, gateway, "a", {"action": "sendMessage", "targetUserId": "u_b", "text": "yo",
                                  "ref": 1})  # fmt: skip
    assert ack["delivered"] == 2
    assert [m["text"] for m in kinds(gateway, "b1", "message") + kinds(gateway, "b2", "message")] == [
        "yo", "yo",
    ]  # fmt: skip
    nobody = send(sb, gateway, "a", {"action": "sendMessage", "targetUserId": "u_x", "text": "?",
                                     "ref": 2})  # fmt: skip
    # No online oracle (issue #22 item 9): an ack that it was stored, no stream or seq.
    assert nobody["type"] == "ack" and nobody["stored"] is True and nobody["delivered"] == 0
    assert "stream" not in nobody and "seq" not in nobody


def test_leave_then_send_room_is_forbidden_and_the_others_hear_the_leave(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    for cid in ("a", "b"):
        connect(sb, clock, cid, f"u_{cid}")
        send(sb, gateway, cid, {"action": "join", "room": "lobby", "ref": 1})
    assert send(sb, gateway, "a", {"action": "leave", "room": "lobby", "ref": 2})["left"]
    refused = send(sb, gateway, "a", {"action": "sendRoom", "room": "lobby", "text": "x",
                                      "ref": 3})  # fmt: skip
    assert refused["code"] == "forbidden"
    assert ("leave", "u_a") in [(p["event"], p["userId"]) for p in kinds(gateway, "b", "presence")]


def test_disconnect_forgets_the_connection_and_announces_the_leave(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    for cid in ("a", "b"):
        connect(sb, clock, cid, f"u_{cid}")
        send(sb, gateway, cid, {"action": "join", "room": "lobby", "ref": 1})
    assert sb.on_disconnect(disconnect_event("a")).status == 200
    assert sb.registry.get("a") is None
    assert kinds(gateway, "b", "presence")[-1]["event"] == "leave"
    assert sb.members("lobby")["count"] == 1


def test_a_gone_recipient_is_pruned_by_the_send_that_meets_it(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    for cid in ("a", "b"):
        connect(sb, clock, cid, f"u_{cid}")
        send(sb, gateway, cid, {"action": "join", "room": "lobby", "ref": 1})
    gateway.outcomes["b"] = Outcome.GONE
    ack = send(sb, gateway, "a", {"action": "sendRoom", "room": "lobby", "text": "x", "ref": 2})
    assert (ack["delivered"], ack["gone"]) == (0, 1)
    assert sb.registry.get("b") is None


def test_pings_over_the_burst_are_rate_limited_until_time_refills_the_bucket(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    connect(sb, clock, "a", "u_1")
    replies = [send(sb, gateway, "a", {"action": "ping", "ref": n}) for n in range(21)]
    assert [r["type"] for r in replies] == ["pong"] * 20 + ["error"]
    assert (replies[20]["code"], replies[20]["retryAfterMs"]) == ("rate_limited", 100)
    for n in range(10):
        clock.now += 0.1  # one token back at 10 frames/s, on every step
        assert send(sb, gateway, "a", {"action": "ping", "ref": 100 + n})["type"] == "pong"
    assert send(sb, gateway, "a", {"action": "ping", "ref": 200})["code"] == "rate_limited"


def test_the_connection_cap_refuses_the_handshake(clock: Clock, gateway: FakeGateway) -> None:
    sb = memory.switchboard(clock, gateway, max_connections_per_user=2)
    assert [connect(sb, clock, f"c{n}", "u_1") for n in range(3)] == [200, 200, 429]


def last_reply(
    sb: Switchboard, gateway: FakeGateway, cid: str, frame: dict[str, Any]
) -> dict[str, Any]:
    """The last frame ``frame`` made reach ``cid`` (a resume's ``resumed`` after its replay)."""
    sb.on_message(message_event(cid, frame))
    return gateway.frames(cid)[-1]


def test_a_resume_frame_is_capped_in_streams_and_messages(
    clock: Clock, gateway: FakeGateway
) -> None:
    sb = memory.switchboard(
        clock,
        gateway,
        message_rate=1000.0,
        message_burst=1000,
        replay_max_streams=2,
        replay_max_messages=5,
    )
    connect(sb, clock, "a", "u_1")
    for room in ("x", "y", "z"):
        assert send(sb, gateway, "a", {"action": "join", "room": room})["type"] == "ack"
        for n in range(4):
            sb.message_log.append(f"room:{room}", {"type": "message", "text": str(n)})
    streams = {"room:x": 0, "room:y": 0, "room:z": 0}
    resumed = last_reply(sb, gateway, "a", {"action": "resume", "streams": streams})["streams"]
    # Each stream: the enter (seq 1) and 4 messages. 5 messages per frame, 2 streams.
    assert resumed["room:x"]["replayed"] == 5 and resumed["room:x"]["truncated"] is False
    assert isinstance(resumed["room:y"].pop("epoch"), str)
    assert resumed["room:y"] == {
        "after": 0,
        "last": 5,
        "replayed": 0,
        "truncated": True,
        "next": 1,
    }
    assert resumed["room:z"]["refused"] == "at most 2 streams per resume frame"
    replayed = [m for f in gateway.frames("a") if f["type"] == "replay" for m in f["messages"]]
    assert len(replayed) == 5


def test_a_resume_over_the_users_replay_budget_is_refused_at_once(
    clock: Clock, gateway: FakeGateway
) -> None:
    sb = memory.switchboard(
        clock, gateway, replay_max_messages=100, replay_burst=150, replay_rate=10.0
    )
    connect(sb, clock, "a", "u_1")
    connect(sb, clock, "b", "u_1")
    for cid in ("a", "b"):
        assert send(sb, gateway, cid, {"action": "join", "room": "x"})["type"] == "ack"
    for n in range(120):
        sb.message_log.append("room:x", {"type": "message", "text": str(n)})
    resume = {"action": "resume", "streams": {"room:x": 0}}
    assert last_reply(sb, gateway, "a", resume)["type"] == "resumed"  # 100 of 150 replayed
    before = len(gateway.frames("b"))
    refused = send(sb, gateway, "b", resume)  # the same user on another connection
    assert refused["code"] == "rate_limited" and refused["retryAfterMs"] == 5000
    assert len(gateway.frames("b")) == before + 1  # the error only: nothing replayed


@pytest.mark.parametrize(("leave_cost", "most"), [(1, 1200), (10, 300)])
def test_presence_toggles_in_a_20_member_room_cost_a_bounded_number_of_posts(
    clock: Clock, gateway: FakeGateway, leave_cost: int, most: int
) -> None:
    """#22 item 3: 60 join/leave toggles, one frame per 0.1 s (the sustained frame rate), in
    a room of 20. With a leave at one token every toggle reaches the 19 others (the review
    counted 1,410 posts); at LEAVE_FRAME_COST=10 most leaves wait for their tokens."""
    sb = memory.switchboard(clock, gateway, leave_frame_cost=leave_cost)
    for n in range(19):
        connect(sb, clock, f"m{n}", f"u_m{n}")
        assert send(sb, gateway, f"m{n}", {"action": "join", "room": "r"})["type"] == "ack"
    connect(sb, clock, "t", "u_t")
    assert send(sb, gateway, "t", {"action": "join", "room": "r"})["type"] == "ack"
    clock.now += 5.0  # a full bucket
    before = sum(len(posts) for posts in gateway.sent.values())
    for n in range(60):
        sb.on_message(
            message_event("t", {"action": "leave" if n % 2 == 0 else "join", "room": "r"})
        )
        clock.now += 0.1
    posts = sum(len(posts) for posts in gateway.sent.values()) - before
    assert posts == most if leave_cost == 1 else posts <= most, posts


def test_a_resume_to_a_client_that_does_not_read_stops_at_the_first_failed_post(
    clock: Clock, gateway: FakeGateway
) -> None:
    sb = memory.switchboard(clock, gateway)
    connect(sb, clock, "a", "u_1")
    assert send(sb, gateway, "a", {"action": "join", "room": "x"})["type"] == "ack"
    for n in range(50):
        sb.message_log.append("room:x", {"type": "message", "text": str(n)})
    gateway.outcomes["a"] = Outcome.THROTTLED  # its buffer is full: 429 after the retries
    before = len(gateway.endpoints)
    sb.on_message(message_event("a", {"action": "resume", "streams": {"room:x": 0}}))
    assert len(gateway.endpoints) - before == 2  # one replayed post and the resumed frame


# --- events (issue #24) --------------------------------------------------------------------


def in_lobby(sb: Switchboard, gateway: FakeGateway, clock: Clock, *cids: str) -> None:
    for cid in cids:
        connect(sb, clock, cid, f"u_{cid}")
        send(sb, gateway, cid, {"action": "join", "room": "lobby", "ref": 1})


def test_a_structured_send_reaches_the_room_with_event_data_and_epoch(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    in_lobby(sb, gateway, clock, "a", "b")
    ack = send(sb, gateway, "a", {"action": "sendRoom", "room": "lobby", "event": "order.updated",
                                  "data": {"id": 7}, "ref": 2})  # fmt: skip
    [message] = kinds(gateway, "b", "message")
    assert (message["event"], message["data"], message["epoch"]) == (
        "order.updated", {"id": 7}, ack["epoch"],
    )  # fmt: skip


def test_an_ephemeral_send_is_delivered_and_never_logged(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    in_lobby(sb, gateway, clock, "a", "b")
    before = sb.message_log.head("room:lobby")
    ack = send(sb, gateway, "a", {"action": "sendRoom", "room": "lobby", "event": "typing",
                                  "data": True, "ephemeral": True, "ref": 2})  # fmt: skip
    assert (ack["ephemeral"], ack["delivered"], "seq" in ack, "stream" in ack) == (
        True, 1, False, False,
    )  # fmt: skip
    [typing] = kinds(gateway, "b", "message")
    assert typing["ephemeral"] is True and "seq" not in typing
    assert sb.message_log.head("room:lobby") == before  # no seq taken, nothing written


def test_a_stale_epoch_resumes_as_a_reset_and_latest_reads_the_newest(
    sb: Switchboard, gateway: FakeGateway, clock: Clock
) -> None:
    in_lobby(sb, gateway, clock, "a")
    for n in range(4):
        send(
            sb,
            gateway,
            "a",
            {"action": "sendRoom", "room": "lobby", "text": f"m{n}", "ref": 10 + n},
        )
    cursor = {"epoch": "old-epoch", "seq": 3}
    resumed = send(sb, gateway, "a", {"action": "resume", "streams": {"room:lobby": cursor},
                                      "ref": 20})  # fmt: skip
    summary = resumed["streams"]["room:lobby"]
    assert summary["reset"] is True and summary["epoch"] == sb.message_log.head("room:lobby").epoch
    assert (summary["replayed"], summary["next"]) == (0, 1) and kinds(gateway, "a", "replay") == []
    page = send(sb, gateway, "a", {"action": "history", "stream": "room:lobby", "latest": True,
                                   "limit": 2, "ref": 21})  # fmt: skip
    assert [m["text"] for m in page["messages"]] == ["m2", "m3"] and page["prev"] is not None
