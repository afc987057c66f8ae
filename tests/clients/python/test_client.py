"""The client's state machine against a fake server (tests/clients/python/fakes.py): states and
events, backoff with full jitter, rejoin and resume, gap fill, queueing, acks and errors,
keepalive, the planned reconnect, persisted seqs. Every wait is event-based and bounded."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from switchboard_client import (
    Backoff,
    Client,
    ClientClosed,
    ConnectError,
    ErrorCode,
    FileStore,
    MemoryStore,
    Message,
    Presence,
    QueueFull,
    RequestTimeout,
    Sequencer,
    State,
    StateChange,
    SwitchboardError,
    entry_from_frame,
)

from tests.clients.python.fakes import FakeServer

pytestmark = pytest.mark.timeout(30)
T = TypeVar("T")


def run(test: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(test(), 20)

    return asyncio.run(bounded())


def make_client(server: FakeServer, **options: Any) -> tuple[Client, list[Message]]:
    options.setdefault("backoff", Backoff(0.01, 0.05, random.Random(1)))
    options.setdefault("request_timeout", 2.0)
    client = Client("ws://fake/api", user_id=server.user, connector=server.connect, **options)
    got: list[Message] = []
    client.on_message(got.append)
    return client, got


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


# --- backoff ---------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_a_capped_exponential_ceiling() -> None:
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(7))
    assert [backoff.ceiling(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]
    for attempt in range(7):
        delays = [backoff.delay(attempt) for _ in range(2000)]
        assert 0 <= min(delays) and max(delays) <= backoff.ceiling(attempt)
        # Full jitter: uniform over [0, ceiling], so the mean is half of it and small waits occur.
        assert statistics.mean(delays) == pytest.approx(backoff.ceiling(attempt) / 2, rel=0.08)
        assert min(delays) < backoff.ceiling(attempt) * 0.05
    seeded = [Backoff(0.5, 8.0, random.Random(3)) for _ in range(2)]
    assert [seeded[0].delay(n) for n in range(6)] == [seeded[1].delay(n) for n in range(6)]


def test_backoff_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
    with pytest.raises(ValueError):
        Backoff(base=2, cap=1)


# --- ordering --------------------------------------------------------------------------------


def message(stream: str, seq: int) -> Message:
    return Message(stream=stream, seq=seq, id=f"{stream}-{seq}", sender="x", scope="room", text="")


def test_sequencer_delivers_once_in_seq_order_and_waits_for_no_skipped_seq() -> None:
    from switchboard_client import Sequencer

    seq = Sequencer({"room:a": 0})
    assert seq.offer(message("room:a", 2)) == [] and seq.waiting() == {"room:a": 0}
    assert [m.seq for m in seq.offer(message("room:a", 1))] == [1, 2]
    assert seq.offer(message("room:a", 2)) == [] and seq.stats.duplicates == 1
    assert seq.offer(message("room:a", 5)) == []
    assert [m.seq for m in seq.skip("room:a", [3, 4])] == [5]
    assert seq.offer(message("room:a", 9)) == []
    assert [m.seq for m in seq.advance("room:a", 8)] == [9]  # 6..8 past retention
    assert seq.stats.gone == 3 and seq.stats.skipped == 2 and seq.stats.delivered == 4
    # A stream first seen live starts at its first message, not at its beginning.
    assert [m.seq for m in seq.offer(message("all", 40))] == [40]


# --- the state machine -----------------------------------------------------------------------


def test_states_events_and_a_reconnect_that_rejoins_and_resumes() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, got = make_client(server, store=MemoryStore({"room:lobby": 0}))
        changes: list[StateChange] = []
        client.on_state(changes.append)
        await client.connect(5)
        await client.join("lobby")
        assert client.connection_id == "c1" and client.rooms == {"lobby"}
        server.socket.push(server.append("room:lobby", "one"))
        await until(lambda: len(got) == 1)
        server.append("room:lobby", "two")  # sent while the client is away
        server.append("room:lobby", "three")
        await server.socket.close()
        await client.wait_for(State.RECONNECTING, 5)
        await client.wait_for(State.OPEN, 5)
        assert server.socket.actions() == ["whoami", "join", "resume"]
        # Every stream is resumed: the user's and `all` from "now" as of the first connect.
        assert server.socket.sent[2]["streams"] == {"user:u_1": 0, "all": 0, "room:lobby": 1}
        await until(lambda: len(got) == 3)
        server.socket.push({**server.log["room:lobby"][1], "replayed": True})  # a duplicate
        await until(lambda: client.stats.duplicates == 1)
        await client.close()
        assert [m.text for m in got] == ["one", "two", "three"]
        states = [c.current for c in changes]
        assert states == ["connecting", "open", "reconnecting", "open", "closed"]
        assert changes[2].retry_in is not None and 0 <= changes[2].retry_in <= 0.01

    run(scenario)


def test_a_gap_is_held_then_fetched_with_history() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, got = make_client(server, gap_hold=0.05, store=MemoryStore({"all": 0}))
        await client.connect(5)
        first, second, third = (server.append("all", t) for t in "abc")
        server.socket.push(first)
        server.socket.push(third)  # "b" overtaken, never arrives live
        await until(lambda: len(got) == 3)
        assert [m.text for m in got] == ["a", "b", "c"]
        assert "history" in server.socket.actions()
        assert client.stats.filled_from_history == 1 and client.stats.held == 1
        await client.close()

    run(scenario)


def test_resume_truncated_pages_on_with_history() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.replay_limit = 3
        for i in range(250):
            server.append("all", str(i))
        client, got = make_client(server, store=MemoryStore({"all": 0}))
        await client.connect(5)
        assert [m.seq for m in got] == list(range(1, 251))
        assert server.socket.actions().count("history") == 3  # 100 + 100 + 47
        await client.close()

    run(scenario)


def test_sends_while_reconnecting_are_queued_and_unacked_ones_resent_with_their_id() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, _ = make_client(server, request_timeout=5)
        await client.connect(5)
        await client.join("r")
        server.hold_acks = True
        unacked = asyncio.ensure_future(client.send_room("r", "in flight"))
        await until(lambda: "sendRoom" in server.socket.actions())
        first_id = server.socket.sent[-1]["clientMsgId"]
        server.refuse = 2  # two failed attempts: the client stays in reconnecting a while
        await server.socket.close()
        await client.wait_for(State.RECONNECTING, 5)
        queued = asyncio.ensure_future(client.send_room("r", "queued"))
        await asyncio.sleep(0)
        server.hold_acks = False
        await client.wait_for(State.OPEN, 5)
        acks = await asyncio.gather(unacked, queued)
        sent = server.socket.sent
        assert [f["action"] for f in sent] == ["whoami", "join", "resume", "sendRoom", "sendRoom"]
        assert sent[3]["clientMsgId"] == first_id and sent[4]["text"] == "queued"
        assert acks[0]["clientMsgId"] == first_id and client.reconnects == 3
        await client.close()

    run(scenario)


def test_the_queue_is_bounded() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.refuse = 1000
        client, _ = make_client(server, max_queue=2, request_timeout=5)
        client.start()
        waiting = [asyncio.ensure_future(client.broadcast(str(i))) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await client.broadcast("one too many")
        await client.close()
        for future in waiting:
            with pytest.raises(ClientClosed):
                await future

    run(scenario)


def test_an_error_frame_raises_its_code_and_no_answer_raises_a_timeout() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, _ = make_client(server, request_timeout=0.2)
        await client.connect(5)
        server.errors["sendRoom"] = "forbidden"
        with pytest.raises(SwitchboardError) as error:
            await client.send_room("nowhere", "x")
        assert error.value.code == "forbidden" and error.value.frame["type"] == "error"
        server.errors["join"] = "forbidden"
        with pytest.raises(SwitchboardError):
            await client.join("full")
        assert client.rooms == set()  # a refused join is not remembered
        server.hold_acks = True
        with pytest.raises(RequestTimeout) as timeout:
            await client.broadcast("x")
        assert timeout.value.code == "timeout" and isinstance(timeout.value, TimeoutError)
        await client.close()
        with pytest.raises(ClientClosed):
            await client.broadcast("after close")

    run(scenario)


def test_gives_up_only_when_told() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.refuse = 1000
        client, _ = make_client(server, max_attempts=3)
        changes: list[StateChange] = []
        client.on_state(changes.append)
        with pytest.raises(ConnectError) as failed:
            await client.connect(5)
        assert isinstance(failed.value, ClientClosed)  # what connect() raised before
        assert failed.value.code == ErrorCode.GAVE_UP and failed.value.attempts == 3
        assert [c.current for c in changes] == ["connecting"] + ["reconnecting"] * 3 + ["failed"]
        assert [c.attempt for c in changes[1:4]] == [1, 2, 3]
        assert "gave up after 3 attempts" in changes[-1].reason

    run(scenario)


def test_keepalive_pings_and_a_missing_pong_reconnects() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, _ = make_client(server, ping_interval=0.05, request_timeout=0.2)
        await client.connect(5)
        await until(lambda: server.socket.actions().count("ping") >= 2)
        server.mute_pongs = True
        first = server.socket
        await client.wait_for(State.RECONNECTING, 5)
        assert first.closed and len(server.sockets) >= 1
        server.mute_pongs = False
        await client.wait_for(State.OPEN, 5)
        await client.close()

    run(scenario)


def test_a_planned_reconnect_waits_for_acks_in_flight_then_reconnects_at_once() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, _ = make_client(server, max_connection_age=0.2)
        changes: list[StateChange] = []
        client.on_state(changes.append)
        await client.connect(5)
        for i in range(5):
            await client.broadcast(str(i))
        await until(lambda: len(server.sockets) >= 2)
        await client.wait_for(State.OPEN, 5)
        planned = [c for c in changes if c.current == "reconnecting"]
        assert planned and planned[0].retry_in == 0.0 and "planned" in planned[0].reason
        assert sum(s.actions().count("broadcastAll") for s in server.sockets) == 5  # none twice
        await client.close()

    run(scenario)


def test_a_file_store_lets_a_restarted_app_resume(tmp_path: Path) -> None:
    path = tmp_path / "seqs.json"

    async def first_run() -> None:
        client, got = make_client(server, store=FileStore(path))
        await client.connect(5)
        server.socket.push(server.append("all", "seen"))
        await until(lambda: len(got) == 1)
        await client.close()

    async def second_run() -> list[str]:
        client, got = make_client(server, store=FileStore(path))
        await client.connect(5)
        await client.close()
        return [m.text for m in got]

    server = FakeServer()
    run(first_run)
    server.append("all", "missed while the app was down")
    assert FileStore(path).load() == {"all": 1, "user:u_1": 0}
    assert run(second_run) == ["missed while the app was down"]
    path.write_text("not json")
    assert FileStore(path).load() == {}


# --- presence, members, rate limits ----------------------------------------------------------


def test_sequencer_orders_presence_events_with_messages_by_their_seq() -> None:
    seq = Sequencer({"room:a": 0})
    enter = Presence.from_frame(
        {"type": "presence", "room": "a", "event": "enter", "userId": "u_2"}
        | {"stream": "room:a", "seq": 2}
    )
    assert enter is not None
    assert [e.seq for e in seq.offer(message("room:a", 3))] == []  # held behind 2
    assert seq.waiting() == {"room:a": 0}
    assert [e.seq for e in seq.offer(message("room:a", 1))] == [1]
    ready = seq.offer(enter)
    assert [(type(e).__name__, e.seq) for e in ready] == [("Presence", 2), ("Message", 3)]
    assert seq.waiting() == {}
    assert seq.offer(enter) == [] and seq.stats.duplicates == 1  # a replayed copy
    assert (seq.stats.delivered, seq.stats.presence) == (3, 1)
    assert entry_from_frame({"type": "presence", "stream": "room:a"}) is None  # no seq
    assert entry_from_frame({"type": "pong", "stream": "room:a", "seq": 4}) is None


def presence_client(
    server: FakeServer, **options: Any
) -> tuple[Client, list[Message], list[Presence]]:
    """A client reading room "den" from its start, with its messages and presence events."""
    client, got = make_client(server, store=MemoryStore({"room:den": 0}), **options)
    events: list[Presence] = []
    client.on_presence(events.append)
    return client, got, events


def test_presence_events_reach_on_presence_in_order_and_fill_gaps_from_history() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, got, events = presence_client(server, gap_hold=0.05)
        await client.connect(5)
        await client.join("den")
        live_enter = server.presence("room:den", "enter", "u_2")
        first = server.append("room:den", "hi")
        server.presence("room:den", "enter", "u_1")  # our own: never fanned out to us
        second = server.append("room:den", "again")
        leave = server.presence("room:den", "leave", "u_2")
        for frame in (first, live_enter, second, leave, {**live_enter, "replayed": True}):
            server.socket.push(frame)
        await until(lambda: len(events) == 3 and len(got) == 2)
        assert [(e.seq, e.event, e.user_id, e.room) for e in events] == [
            (1, "enter", "u_2", "den"),
            (3, "enter", "u_1", "den"),
            (5, "leave", "u_2", "den"),
        ]
        assert [(m.seq, m.text) for m in got] == [(2, "hi"), (4, "again")]
        # Seq 3 was a presence event: one history page filled it, and no gap is left.
        assert server.socket.actions().count("history") == 1
        # Duplicates: the page's copies of the held 4 and 5, and the replayed enter.
        assert client.stats.filled_from_history == 1 and client.stats.duplicates == 3
        assert client.last_seqs()["room:den"] == 5
        await client.close()

    run(scenario)


def test_presence_is_replayed_by_a_resume_after_a_reconnect() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, got, events = presence_client(server)
        await client.connect(5)
        await client.join("den")
        await server.socket.close()
        server.presence("room:den", "leave", "u_2")  # while the client is away
        server.append("room:den", "missed")
        await client.wait_for(State.RECONNECTING, 5)
        await client.wait_for(State.OPEN, 5)
        await until(lambda: len(got) == 1 and len(events) == 1)
        assert events[0].replayed and (events[0].seq, events[0].event) == (1, "leave")
        assert got[0].seq == 2
        await client.close()

    run(scenario)


def test_members_answers_the_roster_and_a_non_member_gets_forbidden() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.members["den"] = [{"userId": "u_1", "connections": 2}]
        client, _ = make_client(server)
        await client.connect(5)
        roster = await client.members("den")
        assert (roster["type"], roster["count"], roster["users"]) == (
            "members",
            1,
            [{"userId": "u_1", "connections": 2}],
        )
        assert server.socket.sent[-1]["action"] == "members"
        with pytest.raises(SwitchboardError) as refused:
            await client.members("elsewhere")
        assert refused.value.code == "forbidden"
        await client.close()

    run(scenario)


def test_rate_limited_carries_retry_after_ms() -> None:
    error = SwitchboardError("rate_limited", "slow", {"code": "rate_limited", "retryAfterMs": 90})
    assert error.retry_after_ms == 90
    assert (
        SwitchboardError("rate_limited", "in progress", {"code": "rate_limited"}).retry_after_ms
        is None
    )
    assert SwitchboardError("x", "y", {"retryAfterMs": "soon"}).retry_after_ms is None

    async def scenario() -> None:
        server = FakeServer()
        server.errors["sendRoom"] = "rate_limited"
        client, _ = make_client(server)
        await client.connect(5)
        with pytest.raises(SwitchboardError) as limited:  # a first try: the app decides
            await client.send_room("r", "too fast")
        assert limited.value.code == "rate_limited" and client.retried == 0
        await client.close()

    run(scenario)


def test_a_resent_send_still_in_progress_is_asked_again_and_gets_the_original_ack() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.hold_acks = True  # the first try is logged, its ack lost with the socket
        client, _ = make_client(server, request_timeout=5)
        await client.connect(5)
        pending = asyncio.ensure_future(client.broadcast("ack lost"))
        await until(lambda: server.socket.actions()[-1:] == ["broadcastAll"])
        server.hold_acks, server.in_progress = False, 2  # "still being logged" twice more
        await server.socket.close()
        ack = await pending
        sends = [f for f in server.socket.sent if f.get("action") == "broadcastAll"]
        assert len(sends) == 3 and len({f["clientMsgId"] for f in sends}) == 1
        assert ack["duplicate"] is True and ack["seq"] == 1
        assert len(server.log["all"]) == 1  # logged once
        assert client.retried == 2
        await client.close()

    run(scenario)
