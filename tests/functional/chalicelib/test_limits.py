"""Per-user and per-connection abuse limits, on DynamoDB (security issue #12, finding 2).

One non-admin connection sent 300 frames in 8 s, all delivered; one token opened 150
connections; the 50-room cap was per connection. These run at the defaults of Settings
(10 connections and 50 rooms per user, 10 frames/s with a burst of 20) unless a test says so.
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.limits import Limits
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from chalicelib.table import DynamoDB
from tests.conftest import TABLE, Clock, make_switchboard
from tests.helpers import FakeGateway, connect_event, disconnect_event, message_event

TOO_MANY = {"message": "too many connections for this user (limit 10)"}


def connect(sb: Switchboard, cid: str, user: str) -> int:
    return sb.on_connect(connect_event(cid, {"userId": user})).status


def send(sb: Switchboard, gateway: FakeGateway, cid: str, frame: Any) -> dict[str, Any]:
    before = len(gateway.sent.get(cid, []))
    assert sb.on_message(message_event(cid, frame)).status == 200
    replies = gateway.frames(cid)[before:]
    assert len(replies) == 1, replies
    return replies[0]


# --- connections per user ----------------------------------------------------------------


def test_the_eleventh_connection_of_a_user_is_refused_with_429(
    switchboard: Switchboard, registry: Registry
) -> None:
    for n in range(10):
        assert connect(switchboard, f"c{n}", "u_1") == 200
    refused = switchboard.on_connect(connect_event("c10", {"userId": "u_1"}))
    assert (refused.status, refused.body) == (429, TOO_MANY)
    assert registry.get("c10") is None  # nothing registered for the refused handshake
    assert connect(switchboard, "other", "u_2") == 200  # the cap is per user


def test_a_closed_or_expired_connection_frees_its_place(
    switchboard: Switchboard, registry: Registry, clock: Clock
) -> None:
    for n in range(10):
        assert connect(switchboard, f"c{n}", "u_1") == 200
    switchboard.on_disconnect(disconnect_event("c0"))
    assert connect(switchboard, "c10", "u_1") == 200
    assert connect(switchboard, "c11", "u_1") == 429
    # A connection whose $disconnect never came stops counting once its ttl has passed (no
    # counter to leak: the count is of live items).
    clock.now += 7501
    assert connect(switchboard, "c12", "u_1") == 200


def test_the_connection_cap_is_a_setting(registry: Registry, gateway: FakeGateway) -> None:
    sb = make_switchboard(registry, gateway, max_connections_per_user=2)
    assert [connect(sb, f"c{n}", "u_1") for n in range(3)] == [200, 200, 429]
    assert sb.on_connect(connect_event("c3", {"userId": "u_1"})).body == {
        "message": "too many connections for this user (limit 2)"
    }


def test_a_count_dynamodb_cannot_answer_lets_the_handshake_in(
    switchboard: Switchboard, ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def throttled(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query")

    monkeypatch.setattr(ddb, "query", throttled)
    assert connect(switchboard, "c0", "u_1") == 200


# --- rooms per user ----------------------------------------------------------------------


@pytest.fixture
def roomy(registry: Registry, gateway: FakeGateway) -> Switchboard:
    # Rate generous: these tests send many joins at one instant of the test clock.
    return make_switchboard(registry, gateway, message_rate=1000.0, message_burst=1000)


def join(sb: Switchboard, gateway: FakeGateway, cid: str, room: str) -> dict[str, Any]:
    return send(sb, gateway, cid, {"action": "join", "room": room})


def test_the_rooms_cap_counts_the_rooms_of_all_the_users_connections(
    roomy: Switchboard, gateway: FakeGateway
) -> None:
    connect(roomy, "a", "u_1")
    connect(roomy, "b", "u_1")
    for n in range(30):
        assert join(roomy, gateway, "a", f"r{n}")["type"] == "ack"
    for n in range(30, 50):
        assert join(roomy, gateway, "b", f"r{n}")["type"] == "ack"
    refused = join(roomy, gateway, "b", "r50")  # room 51 of the user, 21st of this connection
    assert refused == {
        "type": "error",
        "code": "forbidden",
        "message": "at most 50 rooms per user, across all of its connections",
    }
    # A room another of the user's connections holds is no new room.
    assert join(roomy, gateway, "b", "r0")["type"] == "ack"
    # Leaving one makes room; a disconnect gives back all of its rooms.
    assert send(roomy, gateway, "a", {"action": "leave", "room": "r1"})["type"] == "ack"
    assert join(roomy, gateway, "b", "r50")["type"] == "ack"
    assert join(roomy, gateway, "b", "r51")["code"] == "forbidden"
    roomy.on_disconnect(disconnect_event("a"))
    assert join(roomy, gateway, "b", "r51")["type"] == "ack"


def test_other_users_rooms_do_not_count(registry: Registry, gateway: FakeGateway) -> None:
    sb = make_switchboard(registry, gateway, max_rooms_per_user=2)
    connect(sb, "a", "u_1")
    connect(sb, "b", "u_2")
    assert join(sb, gateway, "a", "x")["type"] == "ack"
    assert join(sb, gateway, "a", "y")["type"] == "ack"
    assert join(sb, gateway, "b", "z")["type"] == "ack"
    assert join(sb, gateway, "a", "z")["message"] == (
        "at most 2 rooms per user, across all of its connections"
    )


# --- frames per connection ---------------------------------------------------------------


def ping(sb: Switchboard, gateway: FakeGateway, cid: str, ref: int) -> dict[str, Any]:
    return send(sb, gateway, cid, {"action": "ping", "ref": ref})


def test_a_burst_over_the_bucket_is_refused_and_the_connection_stays(
    switchboard: Switchboard, gateway: FakeGateway, registry: Registry, clock: Clock
) -> None:
    connect(switchboard, "a", "u_1")
    replies = [ping(switchboard, gateway, "a", n) for n in range(25)]
    assert [r["type"] for r in replies] == ["pong"] * 20 + ["error"] * 5
    assert replies[20] == {
        "type": "error",
        "code": "rate_limited",
        "message": "too many frames on this connection; nothing was done, retry in 100 ms",
        "retryAfterMs": 100,
        "ref": 20,
    }
    assert registry.get("a") is not None and gateway.closed == []
    clock.now += 0.1  # one token back at 10 frames/s
    assert ping(switchboard, gateway, "a", 99)["type"] == "pong"
    assert ping(switchboard, gateway, "a", 100)["code"] == "rate_limited"
    clock.now += 2.0  # a quiet spell refills the bucket to its burst, no further
    replies = [ping(switchboard, gateway, "a", n) for n in range(21)]
    assert [r["type"] for r in replies] == ["pong"] * 20 + ["error"]


def test_a_refused_send_sends_nothing(
    switchboard: Switchboard, gateway: FakeGateway, registry: Registry, ddb: Any
) -> None:
    connect(switchboard, "spammer", "u_1")
    connect(switchboard, "reader", "u_2")
    for cid in ("spammer", "reader"):
        assert join(switchboard, gateway, cid, "lobby")["type"] == "ack"
    frames = [
        {"action": "sendRoom", "room": "lobby", "text": "x" * 8000, "ref": n} for n in range(30)
    ]
    replies = [send(switchboard, gateway, "spammer", f) for f in frames]
    # The join was one frame of the 20: 19 sends go out, 11 are refused.
    assert [r["type"] for r in replies] == ["ack"] * 19 + ["error"] * 11
    assert {r["code"] for r in replies[19:]} == {"rate_limited"}
    delivered = [f for f in gateway.frames("reader") if f["type"] == "message"]
    assert len(delivered) == 19
    head = ddb.get_item(
        TableName=TABLE, Key={"PK": {"S": "STREAM#room:lobby"}, "SK": {"S": "HEAD"}}
    )
    # The refused ones were never logged: 19 sends and the two users' presence enter events.
    assert head["Item"]["last"]["N"] == "21"


def test_malformed_frames_count_too(switchboard: Switchboard, gateway: FakeGateway) -> None:
    connect(switchboard, "a", "u_1")
    replies = [send(switchboard, gateway, "a", "{not json") for _ in range(21)]
    assert [r["code"] for r in replies] == ["bad_json"] * 20 + ["rate_limited"]


def test_two_containers_share_one_bucket(ddb: Any, clock: Clock) -> None:
    """Two Switchboards built separately (as two Lambda containers would be), one table:
    frames of one connection alternate between them, 100 frames/s offered for a second. The
    total accepted is the bucket's, not twice it: burst + rate * elapsed."""
    gateways = [FakeGateway(), FakeGateway()]
    boards = [
        make_switchboard(
            Registry(DynamoDB(ddb, TABLE, clock=clock), ttl_seconds=7500, all_shards=4), gw
        )
        for gw in gateways
    ]
    assert connect(boards[0], "a", "u_1") == 200
    start = clock.now
    for n in range(100):
        clock.now = start + n * 0.01
        boards[n % 2].on_message(message_event("a", {"action": "whoami", "ref": n}))
    elapsed = clock.now - start
    replies = gateways[0].frames("a") + gateways[1].frames("a")
    accepted = [r for r in replies if r["type"] == "identity"]
    refused = [r for r in replies if r.get("code") == "rate_limited"]
    assert len(accepted) + len(refused) == 100
    assert len(accepted) <= 20 + 10 * elapsed
    assert len(accepted) == 29  # the 30th token comes at 1.0 s
    # Each container alone accepted fewer than a burst: neither held a bucket of its own.
    assert all(sum(r["type"] == "identity" for r in gw.frames("a")) < 20 for gw in gateways)


def test_an_unknown_connection_is_not_limited_and_leaves_no_item(
    switchboard: Switchboard, gateway: FakeGateway, ddb: Any
) -> None:
    for _ in range(25):
        reply = send(switchboard, gateway, "ghost", {"action": "whoami"})
        assert reply["code"] == "not_found"
    item = ddb.get_item(TableName=TABLE, Key={"PK": {"S": "CONN#ghost"}, "SK": {"S": "CONN"}})
    assert "Item" not in item  # the bucket's update never creates a connection item


def test_a_bucket_dynamodb_cannot_answer_lets_the_frame_through(
    switchboard: Switchboard, gateway: FakeGateway, ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(switchboard, "a", "u_1")

    def throttled(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ThrottlingException"}}, "UpdateItem")

    monkeypatch.setattr(ddb, "update_item", throttled)
    assert ping(switchboard, gateway, "a", 1)["type"] == "pong"


def test_the_rate_is_a_setting(registry: Registry, gateway: FakeGateway, clock: Clock) -> None:
    sb = make_switchboard(registry, gateway, message_rate=2.0, message_burst=3)
    connect(sb, "a", "u_1")
    replies = [ping(sb, gateway, "a", n) for n in range(4)]
    assert [r["type"] for r in replies] == ["pong"] * 3 + ["error"]
    assert replies[3]["retryAfterMs"] == 500
    limits = Limits(registry.table, sb.settings)
    clock.now += 0.25
    assert limits.take_frame("a").retry_after_ms == 250
