"""The app's edge (issue 25) for the Python client, against the fake server: a restart resumes a
stored room at once, own sends never come back as incoming (and ``echo`` presents them once),
refusals end in ``failed`` with a typed error, tokens come from a callback and are refreshed over
the live connection, a ``token_expired`` send is retried once, error codes are exported, and
the event-model frames (epochs and ``reset``, ``replay``, ephemeral, ``removed``)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from switchboard_client import (
    Backoff,
    ConnectError,
    ErrorCode,
    MemoryStore,
    Message,
    Reset,
    State,
    SwitchboardClient,
    SwitchboardError,
    is_retryable,
    jwt_expiry,
)

from tests.clients.python.fakes import FakeServer

pytestmark = pytest.mark.timeout(30)
T = TypeVar("T")


def run(test: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(test(), 20)

    return asyncio.run(bounded())


def make(server: FakeServer, **options: Any) -> tuple[SwitchboardClient, list[Message]]:
    options.setdefault("backoff", Backoff(0.01, 0.05, random.Random(1)))
    options.setdefault("request_timeout", 2.0)
    if "token" not in options:
        options["user_id"] = server.user
    client = SwitchboardClient("ws://fake/api", connector=server.connect, **options)
    got: list[Message] = []
    client.on_message(got.append)
    return client, got


async def until(condition: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def jwt(exp: float, sub: str = "u_1") -> str:
    def b64(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{b64({'alg': 'HS256'})}.{b64({'sub': sub, 'exp': exp})}.sig"


# --- 1. a restart in a quiet room -------------------------------------------------------------


def test_after_a_restart_join_resumes_a_stored_room_at_once() -> None:
    async def scenario() -> None:
        server = FakeServer()
        for text in ("a", "b", "c", "d", "e"):
            server.append("room:r2", text)
        client, got = make(server, store=MemoryStore({"room:r2": 2}))
        await client.connect(5)
        await client.join("r2")
        # join returns once the room's stream is resumed: nothing waits for a new message.
        assert [m.text for m in got] == ["c", "d", "e"]
        resume = [f for f in server.socket.sent if f["action"] == "resume"][-1]
        assert resume["streams"] == {"room:r2": 2}
        await client.close()

    run(scenario)


def test_a_new_rooms_messages_sent_during_a_drop_are_resumed() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.append("room:new", "before the join")
        client, got = make(server)
        await client.connect(5)
        await client.join("new")
        await server.socket.close()
        server.append("room:new", "during the drop")
        await client.wait_for(State.RECONNECTING, 5)
        await client.wait_for(State.OPEN, 5)
        await until(lambda: len(got) == 1)
        assert [m.text for m in got] == ["during the drop"]
        await client.close()

    run(scenario)


# --- 2. own sends -----------------------------------------------------------------------------


def test_an_own_send_is_never_delivered_later_as_incoming() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, got = make(server, gap_hold=0.02)
        await client.connect(5)
        await client.join("lobby")
        ack = await client.send_room("lobby", "x1")  # seq 1, never pushed to us
        server.socket.push(server.append("room:lobby", "from bob"))  # seq 2
        await until(lambda: len(got) == 1)
        await asyncio.sleep(0.1)
        assert [m.text for m in got] == ["from bob"] and ack["seq"] == 1
        assert "history" not in server.socket.actions(), "seq 1 is ours: no gap"
        assert client.stats.own == 1
        await client.close()

    run(scenario)


def test_an_own_message_replayed_before_its_ack_is_not_incoming() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, got = make(server, request_timeout=5)
        await client.connect(5)
        await client.join("lobby")
        server.hold_acks = True
        sent = asyncio.ensure_future(client.send_room("lobby", "x1"))
        await until(lambda: "sendRoom" in server.socket.actions())
        server.log["room:lobby"][0]["from"] = "u_1"
        server.append("room:lobby", "from bob")
        server.hold_acks = False
        await server.socket.close()  # the ack is lost; the resume replays seq 1 and 2
        ack = await sent
        await until(lambda: len(got) == 1)
        assert ack.get("duplicate") is True
        assert [m.text for m in got] == ["from bob"]
        await client.close()

    run(scenario)


def test_with_echo_an_own_send_is_presented_once_in_order() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, got = make(server, echo=True)
        await client.connect(5)
        await client.join("lobby")
        await client.publish("lobby", "cursor", {"x": 1})
        server.socket.push({**server.log["room:lobby"][0], "from": "u_1"})  # a late copy
        await asyncio.sleep(0.05)
        assert [(m.seq, m.event, m.data, m.sender, m.echo) for m in got] == [
            (1, "cursor", {"x": 1}, "u_1", True)
        ]
        await client.close()

    run(scenario)


# --- 5. refusals ------------------------------------------------------------------------------


def test_a_400_handshake_fails_at_once_with_a_typed_error() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.statuses = [(400, json.dumps({"message": "userId is required"}))]
        client, _ = make(server)
        states: list[State] = []
        errors: list[SwitchboardError] = []
        client.on_state(lambda c: states.append(c.current))
        client.on_error(errors.append)
        with pytest.raises(ConnectError) as failed:
            await client.connect(8)
        assert failed.value.code == ErrorCode.HANDSHAKE_REFUSED
        assert (failed.value.status, failed.value.server_message) == (400, "userId is required")
        assert failed.value.retryable is False
        assert states == [State.CONNECTING, State.FAILED]
        assert len(server.urls) == 1 and errors == [failed.value]

    run(scenario)


def test_a_401_with_a_token_callback_is_retried_once_with_a_fresh_token() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.statuses = [(401, "expired"), (401, json.dumps({"message": "bad signature"}))]
        calls: list[int] = []

        def token() -> str:
            calls.append(1)
            return f"t{len(calls)}"

        client, _ = make(server, token=token)
        with pytest.raises(ConnectError) as failed:
            await client.connect(8)
        assert failed.value.status == 401 and failed.value.server_message == "bad signature"
        assert [u.rsplit("=", 1)[1] for u in server.urls] == ["t1", "t2"]

    run(scenario)


def test_a_503_handshake_is_retried() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.statuses = [(503, "busy")]
        client, _ = make(server)
        await client.connect(5)
        assert len(server.urls) == 2
        await client.close()

    run(scenario)


def test_connect_timeout_is_typed() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.refuse = 10_000
        client, _ = make(server)
        with pytest.raises(TimeoutError) as timed_out:
            await client.connect(0.1)
        assert isinstance(timed_out.value, SwitchboardError)
        assert timed_out.value.code == ErrorCode.TIMEOUT
        await client.close()

    run(scenario)


# --- 6. tokens --------------------------------------------------------------------------------


def test_the_token_callback_runs_before_every_connect_and_refreshes_before_expiry() -> None:
    async def scenario() -> None:
        server = FakeServer()
        issued: list[str] = []

        async def token() -> str:  # async callbacks work; sync ones too (above)
            issued.append(jwt(time.time() + 0.4))
            return issued[-1]

        client, _ = make(server, token=token, token_refresh_margin=0.1)
        await client.connect(5)
        await until(lambda: "authorize" in server.socket.actions(), 3)
        authorize = [f for f in server.socket.sent if f["action"] == "authorize"][0]
        assert authorize["token"] == issued[1]
        await until(lambda: client.token_refreshes == 1)
        await server.socket.close()
        await client.wait_for(State.RECONNECTING, 5)
        await client.wait_for(State.OPEN, 5)
        assert server.urls[-1].endswith(issued[-1]) and len(issued) >= 3
        await client.close()

    run(scenario)


def test_a_token_expired_send_is_retried_once_after_refresh_forbidden_is_not() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, _ = make(server, token=lambda: "tok")
        await client.connect(5)
        await client.join("lobby")
        server.expired = ["sendRoom"]
        ack = await client.send_room("lobby", "hi")
        sends = [f for f in server.socket.sent if f["action"] == "sendRoom"]
        assert ack["seq"] == 1 and len(sends) == 2
        assert sends[0]["clientMsgId"] == sends[1]["clientMsgId"]
        assert "authorize" in server.socket.actions()
        server.expired = ["sendRoom", "sendRoom"]
        with pytest.raises(SwitchboardError) as twice:
            await client.send_room("lobby", "again")
        assert twice.value.code == ErrorCode.TOKEN_EXPIRED
        server.errors["sendRoom"] = "forbidden"
        before = len(server.socket.sent)
        with pytest.raises(SwitchboardError) as refused:
            await client.send_room("lobby", "no")
        assert refused.value.code == "forbidden" and not refused.value.retryable
        assert len(server.socket.sent) == before + 1, "forbidden is not retried"
        await client.close()

    run(scenario)


def test_jwt_expiry() -> None:
    assert jwt_expiry(jwt(1234)) == 1234
    assert jwt_expiry("not a jwt") is None
    assert jwt_expiry("a.%%%.c") is None


# --- 7. error codes ---------------------------------------------------------------------------


def test_error_codes_match_the_javascript_client() -> None:
    from pathlib import Path

    source = Path(__file__).resolve().parents[3] / "clients" / "js" / "src" / "errors.js"
    text = source.read_text(encoding="utf-8")
    block = text[text.index("ErrorCode = Object.freeze({") : text.index("});")]
    js = dict(
        (name.strip(), value.strip().strip('",'))
        for name, value in (
            line.split(":", 1)
            for line in block.splitlines()[1:]
            if ":" in line and "//" not in line
        )
    )
    assert js == {code.name: code.value for code in ErrorCode}
    assert is_retryable(ErrorCode.RATE_LIMITED) and not is_retryable(ErrorCode.FORBIDDEN)


# --- 3, 4. event-model frames -----------------------------------------------------------------


def test_a_reset_stream_restarts_its_cursor_and_drops_nothing_new() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.epochs["room:lobby"] = "e2"
        server.append("room:lobby", "new 1")
        server.append("room:lobby", "new 2")
        store = MemoryStore({"room:lobby": {"epoch": "e1", "seq": 24}})
        client, got = make(server, store=store)
        resets: list[Reset] = []
        client.on_reset(resets.append)
        await client.connect(5)
        await client.join("lobby")
        server.socket.push(server.append("room:lobby", "new 3"))
        await until(lambda: len(got) == 3)
        assert [m.text for m in got] == ["new 1", "new 2", "new 3"]
        assert resets == [Reset("room:lobby", "e2", "e1")]
        assert store.load()["room:lobby"] == {"epoch": "e2", "seq": 3}
        await client.close()

    run(scenario)


def test_replay_frames_ephemeral_messages_and_removed_frames() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, got = make(server)
        removed: list[dict[str, Any]] = []
        client.on_removed(removed.append)
        await client.connect(5)
        await client.join("den")
        one, two = server.append("room:den", "1"), server.append("room:den", "2")
        server.socket.push({"type": "replay", "stream": "room:den", "epoch": None,
                            "messages": [two, one]})  # fmt: skip
        typing = {"type": "message", "from": "u_2", "scope": "room", "room": "den",
                  "event": "typing", "data": True, "ephemeral": True, "stream": "room:den"}  # fmt: skip
        server.socket.push(typing)
        server.socket.push(typing)
        server.socket.push({"type": "removed", "room": "den", "reason": "revoked"})
        await until(lambda: len(removed) == 1 and len(got) == 4)
        assert [(m.seq, m.event, m.ephemeral) for m in got] == [
            (1, "message", False), (2, "message", False), (0, "typing", True), (0, "typing", True)
        ]  # fmt: skip
        assert got[0].replayed and client.rooms == set()
        frame = await asyncio.wait_for(client.publish("den", "cursor", 1, ephemeral=True), 5)
        sent = server.socket.sent[-1]
        assert sent["ephemeral"] is True and "clientMsgId" not in sent and frame["type"] == "ack"
        await client.close()

    run(scenario)


# --- 8. room and user objects -----------------------------------------------------------------


def test_room_objects_join_send_read_and_iterate_their_own_messages() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.members["lobby"] = [{"userId": "u_1", "connections": 1}]
        client, _ = make(server)
        await client.connect(5)
        lobby = client.room("lobby")
        assert client.room("lobby") is lobby
        await lobby.join()
        assert lobby.joined
        seen: list[str] = []
        lobby.on_message(lambda m: seen.append(m.text))
        removed: list[str] = []
        lobby.on_removed(lambda f: removed.append(str(f["reason"])))

        async def first_two() -> list[str]:
            out = []
            async for message in lobby:
                out.append(message.text)
                if len(out) == 2:
                    return out
            return out

        iterating = asyncio.ensure_future(first_two())
        await asyncio.sleep(0)
        server.socket.push(server.append("room:lobby", "one"))
        server.socket.push(server.append("room:other", "elsewhere"))
        server.socket.push(server.append("room:lobby", "two"))
        assert await asyncio.wait_for(iterating, 5) == ["one", "two"]
        assert seen == ["one", "two"]
        ack = await lobby.publish("cursor", {"x": 1})
        assert server.log["room:lobby"][ack["seq"] - 1]["event"] == "cursor"
        await lobby.send("hi")
        page = await lobby.history(after=0, limit=10)
        assert [m["text"] for m in page["messages"]][:2] == ["one", "two"]
        assert (await lobby.members())["count"] == 1
        server.socket.push({"type": "removed", "room": "lobby", "reason": "revoked"})
        await until(lambda: removed == ["revoked"])
        assert not lobby.joined
        await client.close()

    run(scenario)


def test_user_objects_send_and_receive_direct_messages() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, _ = make(server)
        await client.connect(5)
        bob = client.user("u_2")
        got: list[str] = []
        bob.on_message(lambda m: got.append(m.text))
        await bob.send("hi")
        assert server.socket.sent[-1]["targetUserId"] == "u_2"
        for sender, text in (("u_2", "from bob"), ("u_3", "from carol")):
            frame = server.append("user:u_1", text)
            frame.update({"from": sender, "scope": "user"})
            server.socket.push(frame)
        await until(lambda: len(got) == 1)
        await asyncio.sleep(0.02)
        assert got == ["from bob"]
        await client.close()

    run(scenario)


def test_ordered_sends_wait_for_the_previous_answer_per_stream() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, _ = make(server, ordered_sends=True)
        await client.connect(5)
        await client.join("lobby")
        server.hold_acks = True
        first = asyncio.ensure_future(client.send_room("lobby", "m1"))
        second = asyncio.ensure_future(client.send_room("lobby", "m2"))
        await until(lambda: "sendRoom" in server.socket.actions())
        await asyncio.sleep(0.05)
        assert [f["text"] for f in server.socket.sent if f["action"] == "sendRoom"] == ["m1"]
        server.hold_acks = False
        ack = server.acks[server.socket.sent[-1]["clientMsgId"]]
        server.socket.push(ack)
        assert (await asyncio.wait_for(first, 5))["seq"] == 1
        assert (await asyncio.wait_for(second, 5))["seq"] == 2
        await client.close()

    run(scenario)


def test_a_server_without_authorize_makes_the_refresh_a_planned_reconnect() -> None:
    async def scenario() -> None:
        server = FakeServer()
        server.errors["authorize"] = "unknown_action"
        issued: list[str] = []

        def token() -> str:
            issued.append(jwt(time.time() + 0.3))
            return issued[-1]

        client, _ = make(server, token=token, token_refresh_margin=0.1)
        errors: list[SwitchboardError] = []
        client.on_error(errors.append)
        await client.connect(5)
        await until(lambda: len(server.sockets) == 2, 5)
        await client.wait_for(State.OPEN, 5)
        assert errors and errors[0].code == "unknown_action"
        assert server.urls[-1].endswith(issued[-1])
        await client.close()

    run(scenario)


def test_a_display_name_rides_with_the_user_id() -> None:
    async def scenario() -> None:
        server = FakeServer()
        client, _ = make(server, name="Ann B")
        await client.connect(5)
        assert server.urls[0] == "ws://fake/api?userId=u_1&name=Ann+B"
        await client.close()

    run(scenario)
