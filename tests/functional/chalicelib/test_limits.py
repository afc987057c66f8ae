"""Per-user and per-connection abuse limits, on DynamoDB (security issue #12, finding 2).

One non-admin connection sent 300 frames in 8 s, all delivered; one token opened 150
connections; the 50-room cap was per connection. These run at the defaults of Settings
(10 connections and 50 rooms per user, 10 frames/s with a burst of 20) unless a test says so.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib.auth import Identity
from chalicelib.limits import Limits
from chalicelib.registry import Registry, RoomLimitReached
from chalicelib.service import Switchboard
from chalicelib.table import DynamoDB, Query
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


# --- races: rooms per connection (#22 item 4) ----------------------------------------------


class SerialClient:
    """A DynamoDB client whose calls run one at a time: moto's in-process backend is not
    thread-safe (it deep-copies items other threads are changing), while DynamoDB serialises
    writes per item anyway. Threads still interleave call by call, which is the race."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self.exceptions = client.exceptions

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


def test_parallel_joins_never_put_a_connection_over_its_rooms_cap(
    ddb: Any, clock: Clock, gateway: FakeGateway
) -> None:
    """The review's race: 18 parallel joins made 63 rooms on one connection (cap 50). The cap
    is now a condition of the join's own write, so it holds exactly however joins interleave.
    Each thread's join reads the connection before any of the others committed (the state
    every parallel join saw), then writes."""
    registry = Registry(DynamoDB(SerialClient(ddb), TABLE, clock=clock))
    sb = make_switchboard(
        registry, gateway, message_rate=1000.0, message_burst=1000, max_rooms_per_user=1000
    )
    connect(sb, "a", "u_1")
    for n in range(45):
        assert join(sb, gateway, "a", f"r{n}")["type"] == "ack"
    stale = registry.get("a")  # 45 rooms: every racing join's pre-check passes on it
    assert stale is not None
    barrier = threading.Barrier(18)

    def racer(n: int) -> str:
        barrier.wait()
        try:
            sb.presence.join(stale, f"race{n}", max_rooms=sb.settings.max_rooms_per_connection)
        except RoomLimitReached:
            return "refused"
        return "joined"

    with ThreadPoolExecutor(18) as pool:
        outcomes = list(pool.map(racer, range(18)))
    rooms = registry.get("a").rooms  # type: ignore[union-attr]
    assert len(rooms) == 50, len(rooms)
    assert outcomes.count("joined") == 5 and outcomes.count("refused") == 13
    members = sum(1 for r in rooms for _ in registry.room_members(r))
    assert members == 50  # a refused join left no membership behind


def test_a_join_refused_by_the_write_answers_forbidden(
    registry: Registry, gateway: FakeGateway
) -> None:
    sb = make_switchboard(registry, gateway, max_rooms_per_connection=2)
    connect(sb, "a", "u_1")
    stale = registry.get("a")
    assert join(sb, gateway, "a", "x")["type"] == "ack"
    assert join(sb, gateway, "a", "y")["type"] == "ack"
    with pytest.raises(RoomLimitReached):
        sb.presence.join(stale, "z", max_rooms=2)  # type: ignore[arg-type]
    assert join(sb, gateway, "a", "y")["type"] == "ack"  # a room it holds is no new room


# --- leave costs more (#22 item 3) ---------------------------------------------------------


def test_a_leave_takes_leave_frame_cost_tokens(
    registry: Registry, gateway: FakeGateway, clock: Clock
) -> None:
    sb = make_switchboard(
        registry, gateway, message_rate=10.0, message_burst=20, leave_frame_cost=10
    )
    connect(sb, "a", "u_1")
    assert join(sb, gateway, "a", "x")["type"] == "ack"  # 1 token: 19 left
    assert send(sb, gateway, "a", {"action": "leave", "room": "x"})["type"] == "ack"  # 9 left
    assert join(sb, gateway, "a", "x")["type"] == "ack"  # 8 left
    refused = send(sb, gateway, "a", {"action": "leave", "room": "x"})
    assert refused["code"] == "rate_limited"
    assert refused["retryAfterMs"] == 200  # 2 tokens short at 10/s
    clock.now += 0.2
    assert send(sb, gateway, "a", {"action": "leave", "room": "x"})["type"] == "ack"


# --- replay per frame and per user (#22 item 1) ---------------------------------------------


def _post_room(sb: Switchboard, room: str, n: int, text: str = "m") -> None:
    for _ in range(n):
        sb.push("room", room, {"text": text}, Identity("admin", "admin"))


def test_one_resume_frame_replays_at_most_replay_max_messages_across_its_streams(
    registry: Registry, gateway: FakeGateway
) -> None:
    sb = make_switchboard(
        registry, gateway, message_rate=1000.0, message_burst=1000, replay_max_messages=30
    )
    connect(sb, "a", "u_1")
    rooms = [f"r{n}" for n in range(4)]
    for room in rooms:
        assert join(sb, gateway, "a", room)["type"] == "ack"
        _post_room(sb, room, 20)
    before = len(gateway.frames("a"))
    sb.on_message(
        message_event("a", {"action": "resume", "streams": {f"room:{r}": 0 for r in rooms}})
    )
    frames = gateway.frames("a")[before:]
    replayed = [m for f in frames if f["type"] == "replay" for m in f["messages"]]
    (resumed,) = [f for f in frames if f["type"] == "resumed"]
    assert len(replayed) == 30  # not 80
    summaries = [resumed["streams"][f"room:{r}"] for r in rooms]
    # Each stream: the user's presence enter (seq 1), then the 20 messages.
    assert [s["replayed"] for s in summaries] == [21, 9, 0, 0]
    assert [s["truncated"] for s in summaries] == [False, True, True, True]
    assert [s.get("next") for s in summaries] == [None, 10, 1, 1]
    assert all(s["last"] == 21 for s in summaries)


def test_one_resume_frame_replays_at_most_replay_max_bytes(
    registry: Registry, gateway: FakeGateway
) -> None:
    sb = make_switchboard(
        registry, gateway, message_rate=1000.0, message_burst=1000, replay_max_bytes=8192
    )
    connect(sb, "a", "u_1")
    assert join(sb, gateway, "a", "big")["type"] == "ack"
    _post_room(sb, "big", 10, "x" * 3000)
    before = len(gateway.frames("a"))
    sb.on_message(message_event("a", {"action": "resume", "streams": {"room:big": 0}}))
    frames = gateway.frames("a")[before:]
    replayed = [m for f in frames if f["type"] == "replay" for m in f["messages"]]
    # The presence enter (small), then ~3.2 KB messages: a third would pass 8 KB.
    assert [m["type"] for m in replayed] == ["presence", "message", "message"]
    assert frames[-1]["streams"]["room:big"]["next"] == replayed[-1]["seq"] + 1
    assert sum(len(json.dumps(m)) for m in replayed) <= 8192


def test_a_resume_naming_more_streams_than_replay_max_streams_is_capped(
    registry: Registry, gateway: FakeGateway
) -> None:
    sb = make_switchboard(
        registry, gateway, message_rate=1000.0, message_burst=1000, replay_max_streams=3
    )
    connect(sb, "a", "u_1")
    rooms = [f"r{n}" for n in range(5)]
    for room in rooms:
        assert join(sb, gateway, "a", room)["type"] == "ack"
        _post_room(sb, room, 1)
    frame = send_last(
        sb, gateway, "a", {"action": "resume", "streams": {f"room:{r}": 0 for r in rooms}}
    )
    streams = frame["streams"]
    assert [streams[f"room:{r}"].get("replayed") for r in rooms] == [2, 2, 2, None, None]
    assert streams["room:r4"]["refused"] == "at most 3 streams per resume frame"


def send_last(sb: Switchboard, gateway: FakeGateway, cid: str, frame: Any) -> dict[str, Any]:
    assert sb.on_message(message_event(cid, frame)).status == 200
    return gateway.frames(cid)[-1]


def test_the_replay_budget_is_per_user_across_connections_and_refuses_with_retry_after(
    ddb: Any, clock: Clock, gateway: FakeGateway
) -> None:
    """Two containers (two Switchboards over one table), two connections of one user: the
    budget is the user's. A frame that finds it spent answers rate_limited at once with
    retryAfterMs, nothing replayed; an unused reservation is given back."""
    settings = {
        "message_rate": 1000.0,
        "message_burst": 1000,
        "replay_max_messages": 100,
        "replay_burst": 250,
        "replay_rate": 50.0,
    }
    one = make_switchboard(Registry(DynamoDB(ddb, TABLE, clock=clock)), gateway, **settings)
    two = make_switchboard(Registry(DynamoDB(ddb, TABLE, clock=clock)), gateway, **settings)
    connect(one, "a", "u_1")
    connect(two, "b", "u_1")
    connect(one, "c", "u_2")
    for sb, cid in ((one, "a"), (two, "b"), (one, "c")):
        assert join(sb, gateway, cid, "lobby")["type"] == "ack"
    _post_room(one, "lobby", 120)
    resume = {"action": "resume", "streams": {"room:lobby": 0}}
    assert send_last(one, gateway, "a", resume)["type"] == "resumed"  # 100 of 250
    assert send_last(two, gateway, "b", resume)["type"] == "resumed"  # 200 of 250
    refused = send_last(one, gateway, "b", resume)  # a third needs 100: 50 left
    assert refused["code"] == "rate_limited"
    assert refused["retryAfterMs"] == 1000  # 50 more messages at 50/s
    assert send_last(two, gateway, "c", resume)["type"] == "resumed"  # another user's own
    # A small resume gives back what it did not use: 1 message of a 100-message reservation.
    clock.now += 2.0  # 100 back: 150 left
    assert (
        send_last(one, gateway, "a", {"action": "resume", "streams": {"room:lobby": 121}})[
            "streams"
        ]["room:lobby"]["replayed"]
        == 1
    )
    assert send_last(one, gateway, "a", resume)["type"] == "resumed"  # 149 left: fits


def test_history_pages_are_charged_to_the_replay_budget(
    registry: Registry, gateway: FakeGateway, clock: Clock
) -> None:
    sb = make_switchboard(
        registry, gateway, message_rate=1000.0, message_burst=1000, replay_burst=150
    )
    connect(sb, "a", "u_1")
    assert join(sb, gateway, "a", "lobby")["type"] == "ack"
    _post_room(sb, "lobby", 5)
    page = {"action": "history", "stream": "room:lobby", "after": 0, "limit": 100}
    assert send(sb, gateway, "a", page)["type"] == "history"  # 5 used, 95 given back
    assert send(sb, gateway, "a", page)["type"] == "history"
    assert send(sb, gateway, "a", {**page, "limit": 100})["type"] == "history"  # 135 left
    _post_room(sb, "lobby", 95)
    assert send(sb, gateway, "a", page)["type"] == "history"  # 100 used: 35 left
    assert send(sb, gateway, "a", page)["code"] == "rate_limited"


# --- races: connections per user (#22 item 4) -----------------------------------------------


def test_parallel_handshakes_of_one_user_never_pass_the_cap(
    ddb: Any, clock: Clock, gateway: FakeGateway
) -> None:
    """The review's race: 80 parallel handshakes of one user, 50 accepted (cap 10). A
    connection now claims one of the user's 10 slot items in the transaction that registers
    it, so exactly 10 get in however the handshakes interleave; the refused leave nothing."""
    registry = Registry(DynamoDB(SerialClient(ddb), TABLE, clock=clock))
    sb = make_switchboard(registry, gateway)
    barrier = threading.Barrier(80)

    def handshake(n: int) -> int:
        barrier.wait()
        return connect(sb, f"c{n}", "u_flood")

    with ThreadPoolExecutor(80) as pool:
        statuses = list(pool.map(handshake, range(80)))
    assert statuses.count(200) == 10 and statuses.count(429) == 70, statuses
    live = [t.connection_id for t in registry.user_connections("u_flood")]
    assert len(live) == 10
    slots = DynamoDB(ddb, TABLE, clock=clock).query(
        Query("USER#u_flood", sk_prefix="SLOT#", limit=100)
    )
    assert sorted(str(i["connectionId"]) for i in slots.items) == sorted(live)


def test_a_closed_connection_frees_its_slot_and_a_lost_disconnect_heals_at_the_ttl(
    registry: Registry, gateway: FakeGateway, clock: Clock
) -> None:
    sb = make_switchboard(registry, gateway, max_connections_per_user=2)

    def connect(sb: Switchboard, cid: str, user: str) -> int:
        event = connect_event(cid, {"userId": user})
        event["requestContext"]["connectedAt"] = int(clock.now * 1000)  # the test's clock
        return sb.on_connect(event).status

    assert connect(sb, "a", "u_1") == 200
    assert connect(sb, "b", "u_1") == 200
    assert connect(sb, "c", "u_1") == 429
    sb.on_disconnect(disconnect_event("a"))
    assert connect(sb, "c", "u_1") == 200  # a's slot was freed
    assert connect(sb, "d", "u_1") == 429
    clock.now += 7501  # b's and c's $disconnect never came: their slots expire with them
    assert connect(sb, "d", "u_1") == 200
    assert connect(sb, "e", "u_1") == 200
    assert connect(sb, "f", "u_1") == 429


def test_a_slot_whose_connection_vanished_is_reclaimed_after_the_grace(
    table: DynamoDB, registry: Registry, gateway: FakeGateway, clock: Clock
) -> None:
    """A removal that deleted the connection but not its slot (a handler killed in between):
    the slot's holder is gone, so a handshake takes it over, but only once the holder's
    item has been missing longer than a registration in flight could explain."""
    sb = make_switchboard(registry, gateway, max_connections_per_user=1)
    assert connect(sb, "a", "u_1") == 200
    table.delete({"PK": "CONN#a", "SK": "CONN"})  # the slot item stays
    assert connect(sb, "b", "u_1") == 429
    clock.now += 31
    assert connect(sb, "b", "u_1") == 200
    assert connect(sb, "c", "u_1") == 429
