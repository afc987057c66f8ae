"""The Python client against the real local gateway (ephemeral ports, AUTH_MODE=none): acks and
errors, rooms, presence and members, a send during a reconnect, and a chaos run where sockets
are closed at random (``DELETE /connections/{id}``) and idle and max-duration timeouts fire
while two senders send. The app's abuse limits are raised (``TEST_LIMITS``): the tests send
faster and reconnect more often than a person."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from switchboard_client import (
    Backoff,
    Client,
    Entry,
    MemoryStore,
    Message,
    Presence,
    State,
    SwitchboardError,
    websocket_connector,
)

from local_gateway import LocalGateway
from tests.gateways import GatewayFactory, http

REPO_ROOT = Path(__file__).resolve().parents[3]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]
T = TypeVar("T")
TEST_LIMITS = {"MESSAGE_RATE": "1000", "MESSAGE_BURST": "1000", "MAX_CONNECTIONS_PER_USER": "1000"}


def run(test: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(test(), timeout)

    return asyncio.run(bounded())


def client(gw: LocalGateway, user: str, **options: Any) -> tuple[Client, list[Message]]:
    assert gw.urls is not None
    options.setdefault("backoff", Backoff(0.05, 0.5, random.Random(user)))
    options.setdefault("connector", websocket_connector(proxy=None))
    c = Client(gw.urls.websocket, user_id=user, **options)
    got: list[Message] = []
    c.on_message(got.append)
    return c, got


async def until(condition: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def kick(gw: LocalGateway, connection_id: str | None) -> int:
    assert connection_id is not None
    status, _ = await asyncio.to_thread(http, gw, "DELETE", f"/connections/{connection_id}")
    return status


def test_acks_errors_and_rooms(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)

    async def scenario() -> None:
        alice, _ = client(gw, "alice")
        bob, bob_got = client(gw, "bob")
        await alice.connect(15)
        await bob.connect(15)
        ack = await alice.send_message("bob", "hi")
        assert (ack["type"], ack["stored"], ack["delivered"]) == ("ack", True, 1)
        # Offline: stored for their resume and acked all the same (no online oracle).
        offline = await alice.send_message("nobody", "kept for their resume")
        assert (offline["type"], offline["stored"], offline["delivered"]) == ("ack", True, 0)
        with pytest.raises(SwitchboardError) as forbidden:
            await alice.send_room("lobby", "not a member")
        assert forbidden.value.code == "forbidden"
        with pytest.raises(SwitchboardError) as not_member:
            await alice.leave("lobby")
        assert not_member.value.code == "not_found"
        assert (await bob.join("lobby"))["joined"] is True
        await alice.join("lobby")
        room_ack = await alice.send_room("lobby", "room hi")
        assert room_ack["stream"] == "room:lobby" and room_ack["seq"] >= 1
        await until(lambda: [m.text for m in bob_got] == ["hi", "room hi"])
        assert bob_got[1].room == "lobby" and bob_got[1].sender == "alice"
        await bob.leave("lobby")
        assert bob.rooms == set()
        await alice.close()
        await bob.close()

    run(scenario)


def test_presence_events_and_members(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)

    async def scenario() -> None:
        alice, alice_got = client(gw, "alice", store=MemoryStore({"room:den": 0}))
        bob, _ = client(gw, "bob")
        events: list[Presence] = []
        alice.on_presence(events.append)
        await alice.connect(15)
        await bob.connect(15)
        with pytest.raises(SwitchboardError) as outsider:
            await alice.members("den")
        assert outsider.value.code == "forbidden"
        await alice.join("den")
        await bob.join("den")
        await until(lambda: [(e.event, e.user_id) for e in events][-1:] == [("enter", "bob")])
        roster = await alice.members("den")
        users = {u["userId"]: u["connections"] for u in roster["users"]}
        assert (roster["count"], users, roster["truncated"]) == (2, {"alice": 1, "bob": 1}, False)
        ack = await bob.send_room("den", "hello")
        await bob.close()
        await until(lambda: [(e.event, e.user_id) for e in events][-1:] == [("leave", "bob")])
        # alice's own enter (never fanned out to her) came from history: the stream is whole.
        entries: list[Entry] = sorted([*events, *alice_got], key=lambda e: e.seq)
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        assert [(e.event, e.user_id) for e in events] == [
            ("enter", "alice"),
            ("enter", "bob"),
            ("leave", "bob"),
        ]
        assert [(m.text, m.seq) for m in alice_got] == [("hello", ack["seq"])]
        assert all(e.stream == "room:den" and e.room == "den" for e in events)
        await alice.close()

    run(scenario)


def test_a_send_during_a_reconnect_is_delivered_exactly_once(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env=TEST_LIMITS)

    async def scenario() -> None:
        sender, _ = client(gw, "s", backoff=Backoff(0.3, 0.5, random.Random(1)))
        receiver, got = client(gw, "r", store=MemoryStore({"room:x": 0}))
        await sender.connect(15)
        await receiver.connect(15)
        await sender.join("x")
        await receiver.join("x")
        assert await kick(gw, sender.connection_id) == 204
        await sender.wait_for(State.RECONNECTING, 10)
        ack = await sender.send_room("x", "sent while reconnecting")  # queued, then sent
        assert ack["stream"] == "room:x" and sender.reconnects >= 1
        await until(lambda: len(got) >= 1)
        await asyncio.sleep(0.3)
        assert [(m.text, m.seq) for m in got] == [("sent while reconnecting", ack["seq"])]
        await sender.close()
        await receiver.close()

    run(scenario)


def test_chaos_every_message_once_in_order_none_lost(gateway_factory: GatewayFactory) -> None:
    """Sockets closed at random by ``DELETE /connections/{id}``; a 1.5 s idle timeout (one
    receiver never pings) and a 4 s maximum duration (one sender never plans its reconnect)."""
    gw = gateway_factory(
        REPO_ROOT, auth_mode="none", env=TEST_LIMITS, idle_timeout=1.5, max_duration=4.0
    )
    per_sender = 100
    rng = random.Random(14)

    async def scenario() -> dict[str, Any]:
        presence: dict[str, list[Presence]] = {"rx": [], "idle": []}
        rx, rx_got = client(
            gw, "rx", ping_interval=0.5, max_connection_age=3.0,
            store=MemoryStore({"room:chaos": 0, "user:rx": 0}),
        )  # fmt: skip
        idle, idle_got = client(
            gw, "idle", ping_interval=None, max_connection_age=None,
            store=MemoryStore({"room:chaos": 0}),
        )  # fmt: skip
        rx.on_presence(presence["rx"].append)
        idle.on_presence(presence["idle"].append)
        s1, _ = client(gw, "s1", ping_interval=0.5, max_connection_age=None)
        s2, _ = client(gw, "s2", ping_interval=0.5, max_connection_age=3.0)
        everyone = [rx, idle, s1, s2]
        for c in everyone:
            await c.connect(15)
            await c.join("chaos")
        acked: dict[tuple[str, int], str] = {}  # room messages, by (stream, seq)
        acked_dms: dict[str, str] = {}  # a DM's ack names no seq (#22 item 9): by id
        kicks = {id(c): 0 for c in (rx, s2)}

        async def send_all(sender: Client, name: str) -> None:
            for i in range(per_sender):
                text = f"{name}-{i}"
                if i % 2:
                    reply = await sender.send_room("chaos", text)
                    acked[(reply["stream"], reply["seq"])] = text
                else:
                    # rx may be away: the message is stored for its resume and acked all the same.
                    reply = await sender.send_message("rx", text)
                    assert reply["stored"] is True, reply
                    acked_dms[reply["id"]] = text
                await asyncio.sleep(rng.uniform(0, 0.06))

        async def chaos(stop: asyncio.Event) -> None:
            while not stop.is_set():
                await asyncio.sleep(rng.uniform(0.2, 0.5))
                victim = rng.choice([rx, s2])  # idle and s1 wait for the timeouts
                if victim.state is State.OPEN and await kick(gw, victim.connection_id) == 204:
                    kicks[id(victim)] += 1

        stop = asyncio.Event()
        chaos_task = asyncio.ensure_future(chaos(stop))
        await asyncio.gather(send_all(s1, "s1"), send_all(s2, "s2"))
        stop.set()
        await chaos_task
        last = {s: max(q for t, q in acked if t == s) for s, _ in acked}
        await until(lambda: all(rx.last_seqs().get(s, 0) >= q for s, q in last.items()), 30)
        await until(lambda: set(acked_dms) <= {m.id for m in rx_got}, 30)
        last["user:rx"] = max(m.seq for m in rx_got if m.id in acked_dms)
        await until(lambda: idle.last_seqs().get("room:chaos", 0) >= last["room:chaos"], 30)
        for c in everyone:
            await c.close()
        streams_of = {"rx": ("room:chaos", "user:rx"), "idle": ("room:chaos",)}
        for name, got in (("rx", rx_got), ("idle", idle_got)):
            # The room's stream holds the presence events the reconnects caused: with them,
            # every seq once, in order, none lost.
            entries: list[Entry] = [*got, *presence[name]]
            for stream in streams_of[name]:
                seqs = sorted(e.seq for e in entries if e.stream == stream)
                assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= last[stream]
                assert [m.seq for m in got if m.stream == stream] == sorted(
                    m.seq for m in got if m.stream == stream
                )
        delivered = {(m.stream, m.seq): m.text for m in rx_got}
        assert all(delivered[key] == text for key, text in acked.items())
        by_id = {m.id: m.text for m in rx_got}
        assert all(by_id[mid] == text for mid, text in acked_dms.items())
        texts = [m.text for m in rx_got]
        return {
            "sent": 2 * per_sender,
            "acked": len(acked) + len(acked_dms),
            "received_rx": len(rx_got),
            "received_idle": len(idle_got),
            "presence_rx": len(presence["rx"]),
            "presence_idle": len(presence["idle"]),
            # A re-sent send repeats its clientMsgId: the server answers with the original ack.
            "logged_twice": len(texts) - len(set(texts)),
            "retried": s1.retried + s2.retried,
            "duplicates_suppressed": rx.stats.duplicates + idle.stats.duplicates,
            "gaps_filled_by_history": rx.stats.filled_from_history + idle.stats.filled_from_history,
            "held": rx.stats.held + idle.stats.held,
            "kicks": sum(kicks.values()),
            "reconnects": {
                name: c.reconnects
                for name, c in zip(("rx", "idle", "s1", "s2"), everyone, strict=True)
            },
        }

    figures = run(scenario, timeout=80)
    print("chaos figures:", figures)
    assert figures["kicks"] >= 5
    # Never kicked: the idle timeout closed the receiver, the maximum duration the sender.
    assert figures["reconnects"]["idle"] >= 2 and figures["reconnects"]["s1"] >= 1
    assert figures["acked"] + figures["logged_twice"] >= figures["sent"]
    # The server dedupes by clientMsgId: every text logged once, under one seq.
    assert figures["logged_twice"] == 0 and figures["acked"] == figures["sent"]
    assert figures["received_rx"] == figures["sent"]
    assert figures["presence_rx"] >= 1 and figures["presence_idle"] >= 1
