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
    FileStore,
    MemoryStore,
    Message,
    QueueFull,
    RequestTimeout,
    State,
    StateChange,
    SwitchboardError,
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
        assert server.socket.sent[2]["streams"] == {"room:lobby": 1}
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
        assert [f["action"] for f in sent] == ["whoami", "join", "sendRoom", "sendRoom"]
        assert sent[2]["clientMsgId"] == first_id and sent[3]["text"] == "queued"
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
        with pytest.raises(ClientClosed):
            await client.connect(5)
        assert [c.current for c in changes] == ["connecting"] + ["reconnecting"] * 3 + ["closed"]
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
    assert FileStore(path).load() == {"all": 1}
    assert run(second_run) == ["missed while the app was down"]
    path.write_text("not json")
    assert FileStore(path).load() == {}
