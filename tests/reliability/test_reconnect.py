"""Reconnecting clients: they drop abruptly, come back, rejoin and resume; nothing is lost.

Two senders keep sending to a room (and DMs to the reconnecting users) for a bounded time.
Each reconnecting client stays a random while, vanishes (TCP reset, no close frame), stays
away a random while, reconnects, rejoins the room and resumes every stream from the last seq
up to which it holds everything. At the end every client resumes once more, and the ledger:

- every message acked to a sender and owed to a client (a room message sent after the client
  first joined; a DM to its user) was received, live or replayed: lost = 0;
- duplicates (live and replayed both) and out-of-order arrivals are counted, not errors;
- at the application, after the client library's ordering (``switchboard_client``'s
  ``Sequencer``, fed every message and presence event as it arrived): every owed message was
  handed on, none twice, none behind a later seq of its stream;
- the registry is empty once everyone closed, and no handler failed.

A DM sent while its user has no live connection answers ``not_found`` but is logged all the
same (the reply carries its ``id``, ``stream`` and ``seq``): it is owed, through the resume. Owed room messages start after a ``history`` read that follows the first join, so their
seqs are above the stream's ``last`` that read returned (the client's starting point).

Waits come from the stack's own progress, not a fixed guess: a resume replays every missed
message as its own post, and at soak scale on a slow machine one resume (or the queue of
handlers ahead of it) outlasted a fixed 60 s. A reply is lost only after an idle window in which
no handler finished and no frame reached any client; the window is derived from the measured
set-up (every client's first session: connect, join, two ``history`` reads).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from switchboard_client.ordering import Message, Sequencer, entry_from_frame

from tests.reliability.admission import Admission
from tests.reliability.conftest import Figures, StackFactory
from tests.reliability.ledger import Sent
from tests.reliability.scale import SCALE, run
from tests.reliability.stack import StackUnderTest
from tests.wsclient import WsClient

pytestmark = pytest.mark.timeout(SCALE.timeout)
ROOM = "lobby"
ROOM_STREAM = f"room:{ROOM}"


@dataclass
class Reconnector:
    """One user that keeps dropping and coming back; what it got, over all its connections."""

    user: str
    joined_at: float = 0.0  # owed room messages sent after this
    start: dict[str, int] = field(default_factory=dict)  # stream -> seq it started after
    seqs: dict[str, set[int]] = field(default_factory=dict)  # stream -> seqs received
    highest: dict[str, int] = field(default_factory=dict)  # stream -> highest seq so far
    ids: set[str] = field(default_factory=set)
    duplicates: int = 0
    out_of_order: int = 0
    replayed: int = 0  # message frames that came from a resume
    connections: int = 0
    problems: list[str] = field(default_factory=list)
    # The application's view: what the client library's ordering hands on, and in what order.
    sequencer: Sequencer | None = None
    app_ids: set[str] = field(default_factory=set)  # message ids handed on
    app_last: dict[str, int] = field(default_factory=dict)  # stream -> last seq handed on
    app_out_of_order: int = 0  # handed on at or behind a seq its stream already handed on
    app_entries: int = 0  # messages and presence events handed on

    @property
    def streams(self) -> tuple[str, str]:
        return ROOM_STREAM, f"user:{self.user}"

    def resume_from(self) -> dict[str, int]:
        """Per stream, the last seq up to which every seq has been received."""
        points: dict[str, int] = {}
        for stream, first in self.start.items():
            seqs, seq = self.seqs.get(stream, set()), first
            while seq + 1 in seqs:
                seq += 1
            points[stream] = seq
        return points

    def fold(self, client: WsClient) -> None:
        """File the message frames one connection received, in arrival order."""
        for frame in client.message_frames:
            mid, stream, seq = str(frame.get("id")), str(frame.get("stream")), frame.get("seq")
            self.replayed += frame.get("replayed") is True
            if mid in self.ids:
                self.duplicates += 1
                continue
            self.ids.add(mid)
            if not isinstance(seq, int):
                self.problems.append(f"{self.user}: message without a seq: {frame}")
                continue
            self.seqs.setdefault(stream, set()).add(seq)
            if seq < self.highest.get(stream, 0):
                self.out_of_order += 1
            self.highest[stream] = max(seq, self.highest.get(stream, 0))
        client.message_frames = []
        self.order(client)

    def order(self, client: WsClient) -> None:
        """Hand the connection's stream entries, in arrival order, to the client library's
        ordering, as its app would see them (one sequencer over all the user's connections,
        started where the user's streams stood, like the library's seq store)."""
        if self.sequencer is None:
            self.sequencer = Sequencer(known=dict(self.start))
        for frame in client.entries:
            entry = entry_from_frame(frame)
            if entry is None:
                continue
            for handed in self.sequencer.offer(entry):
                self.app_entries += 1
                if handed.seq <= self.app_last.get(handed.stream, 0):
                    self.app_out_of_order += 1
                self.app_last[handed.stream] = handed.seq
                if isinstance(handed, Message):
                    self.app_ids.add(handed.id)
        client.entries = []

    def owed(self, sent: Sent) -> bool:
        if sent.scope == "room":
            return sent.sent_at > self.joined_at
        return sent.target == self.user


class Reconnecting:
    def __init__(self, sb: StackUnderTest, seed: int) -> None:
        self.sb = sb
        self.rng = random.Random(seed)
        self.clients = [Reconnector(f"r{n}") for n in range(SCALE.reconnect_clients)]
        self.sent: list[Sent] = []
        self.started = asyncio.Event()  # every client has its starting points
        self.sending_done = asyncio.Event()
        self.resumes = 0
        self.live: set[WsClient] = set()  # open connections, whose frames count as progress
        self.setup_seconds = 0.0  # every client's first session, measured in run()
        self.longest_resume = 0.0  # seconds, the slowest resume's reply
        # Returns (connect, join, resume) start only while the stack keeps up: made once the
        # set-up measured a request's cost (a soak run on a busy machine queued one join past
        # the gateway's 29 s integration timeout).
        self.admission: Admission | None = None

    @property
    def request_cost(self) -> float:
        """Seconds of the serial stack's time per request, from the set-up: every client's
        handshake, join and two ``history`` reads, all under way at once."""
        return self.setup_seconds / (4 * len(self.clients))

    @property
    def idle_timeout(self) -> float:
        """How long the stack may make no progress at all before a reply counts as lost: four
        set-ups (each client's request may queue behind one of every other client's, as in
        the set-up, and a resume's replay or a join's presence fan-out costs a few requests'
        worth), never under the 15 s the churn scenario allows a request."""
        return max(15.0, 4 * self.setup_seconds)

    def progress(self) -> int:
        """Handler invocations finished plus frames read by the open clients: it grows while
        the stack works, whoever it works for (a resume queued behind another's replay)."""
        invocations = self.sb.invocations
        with invocations.lock:
            finished = sum(n for route, n in invocations.counts.items() if route != "errors")
        frames = sum(len(c.messages) + c.duplicates + len(c.presence) for c in self.live)
        return finished + frames

    async def answer(self, client: WsClient, ref: str | int) -> dict[str, Any] | None:
        """The reply to ``ref``: waited for while the stack makes progress, None once a whole
        ``idle_timeout`` passed without any (a resume still replaying is not a lost reply)."""
        mark = self.progress()
        while True:
            reply = await client.reply(ref, timeout=self.idle_timeout)
            if reply is not None:
                return reply
            now = self.progress()
            if now == mark:
                return None
            mark = now

    async def connect(self, who: Reconnector) -> WsClient:
        client = await WsClient.open(self.sb.ws_url, user=who.user)
        client.keep_frames = True
        self.live.add(client)
        who.connections += 1
        # A handler answers within the gateway's integration timeout, or the gateway sends
        # its timeout frame: wait that long (a fixed 15 s lost joins at soak scale when the
        # machine was busy), plus a margin for the frame to arrive.
        started = time.monotonic()
        reply = await client.request(
            {"action": "join", "room": ROOM}, timeout=self.sb.gateway.limits.integration_timeout + 5
        )
        assert reply and reply.get("joined") is True, reply
        if self.admission is not None:
            self.admission.note(started)
        if not who.start:  # first time: where each stream stands now
            for stream in who.streams:
                page = await client.request(
                    {"action": "history", "stream": stream, "limit": 1},
                    timeout=self.sb.gateway.limits.integration_timeout + 5,
                )
                assert page and page.get("type") == "history", page
                who.start[stream] = int(page["last"])
            who.joined_at = time.monotonic()
        return client

    async def resume(self, who: Reconnector, client: WsClient) -> None:
        """Resume every stream, again while a resume stops short (``max_replay``)."""
        for _ in range(100):
            self.resumes += 1
            started = time.monotonic()
            ref = await client.send({"action": "resume", "streams": who.resume_from()})
            reply = await self.answer(client, ref)
            self.longest_resume = max(self.longest_resume, time.monotonic() - started)
            assert reply and reply.get("type") == "resumed", (
                f"{who.user}: no reply to a resume in {time.monotonic() - started:.1f} s, "
                f"the last {self.idle_timeout:.1f} s without progress: {reply}"
            )
            who.fold(client)
            summaries = reply["streams"].values()
            refused = [s for s in summaries if "refused" in s]
            assert not refused, f"{who.user}: {refused}"
            if not any(s.get("truncated") for s in summaries):
                return
        who.problems.append(f"{who.user}: resume never caught up")

    async def reconnector(self, who: Reconnector, rng: random.Random) -> None:
        client = await self.connect(who)
        while not self.sending_done.is_set():
            await asyncio.sleep(rng.uniform(*SCALE.reconnect_pause))
            await client.abort()
            self.live.discard(client)
            who.fold(client)
            await asyncio.sleep(rng.uniform(*SCALE.reconnect_pause))
            assert self.admission is not None
            await self.admission.wait(time.monotonic() + self.idle_timeout)
            async with self.admission.starting:
                client = await self.connect(who)
            await self.resume(who, client)
        await self.sending_done.wait()
        await self.resume(who, client)  # the last one, after every send was acked
        await client.barrier(timeout=self.idle_timeout)
        await client.close()
        self.live.discard(client)
        who.fold(client)

    async def sender(self, name: str, deadline: float) -> None:
        rng = random.Random(self.rng.random())
        client = await WsClient.open(self.sb.ws_url, user=name)
        reply = await client.request(
            {"action": "join", "room": ROOM}, timeout=self.sb.gateway.limits.integration_timeout + 5
        )
        assert reply and reply.get("joined") is True, reply
        await self.started.wait()
        for n in range(100_000):
            if time.monotonic() > deadline:
                break
            frame: dict[str, Any] = {"text": f"{name} #{n}"}
            if rng.random() < 0.75:
                scope, target = "room", ROOM
                frame.update(action="sendRoom", room=ROOM)
            else:
                scope, target = "user", rng.choice(self.clients).user
                frame.update(action="sendMessage", targetUserId=target)
            sent_at = time.monotonic()
            reply = await client.request(
                frame, timeout=self.sb.gateway.limits.integration_timeout + 5
            )
            if self.admission is not None:
                self.admission.note(sent_at, send=True)
            self.sent.append(Sent(name, scope, target, sent_at, time.monotonic(), reply))
            await asyncio.sleep(rng.uniform(0.0, 0.05))
        await client.close()

    async def run(self) -> None:
        started = time.monotonic()
        firsts = [asyncio.create_task(self.connect(who)) for who in self.clients]
        clients = await asyncio.gather(*firsts)
        self.setup_seconds = time.monotonic() - started
        # 10 requests' worth, as the churn's gate (10 set-up joins).
        self.admission = Admission(10 * self.request_cost)
        for client, who in zip(clients, self.clients, strict=True):
            await client.close()  # the first session only fixed the starting points
            self.live.discard(client)
            who.fold(client)
        deadline = time.monotonic() + SCALE.reconnect_seconds
        senders = [asyncio.create_task(self.sender(f"sender-{k}", deadline)) for k in range(2)]
        self.started.set()
        cycling = [
            asyncio.create_task(self.reconnector(who, random.Random(self.rng.random())))
            for who in self.clients
        ]
        await asyncio.gather(*senders)
        self.sending_done.set()
        await asyncio.gather(*cycling)


def test_reconnecting_clients_resume_everything_they_missed(
    switchboard_factory: StackFactory, figures: Figures
) -> None:
    sb = switchboard_factory()
    scenario = Reconnecting(sb, seed=13)
    run(scenario.run())
    assert scenario.admission is not None  # made by the set-up
    # Every client closed: their $disconnects drain, as fast as the set-up ran handlers.
    sb.wait_for_disconnects(timeout=scenario.idle_timeout)
    registry = sb.wait_for_registry(lambda r: r.items == 0, timeout=scenario.idle_timeout)

    acked = [s for s in scenario.sent if logged_id(s) is not None]
    unanswered = [s for s in scenario.sent if s.reply is None]
    refused = [s.reply for s in scenario.sent if s.reply is not None and logged_id(s) is None]
    # DMs nobody heard live (stored all the same: a DM's ack is the same online or not).
    away = [s for s in acked if s.scope == "user" and (s.reply or {}).get("delivered") == 0]
    owed = missing = app_missing = 0
    problems: list[str] = []
    for who in scenario.clients:
        for message in acked:
            if who.owed(message):
                owed += 1
                app_missing += logged_id(message) not in who.app_ids
                if logged_id(message) not in who.ids:
                    missing += 1
                    if len(problems) < 20:
                        problems.append(
                            f"{who.user} never got {message.scope} {logged_id(message)}"
                        )
        problems.extend(who.problems)
    clients = scenario.clients
    figures.record(
        "reconnecting",
        clients=len(clients),
        messages=len(acked),
        faults=f"clients reset TCP and come back after {SCALE.reconnect_pause[0]}-"
        f"{SCALE.reconnect_pause[1]}s, rejoin, resume",
        leaked=registry.items,
        lost=missing,
        owed=owed,
        room_messages=sum(1 for s in acked if s.scope == "room"),
        dms=sum(1 for s in acked if s.scope == "user"),
        dms_to_away_users=len(away),
        connections=sum(c.connections for c in clients),
        resumes=scenario.resumes,
        setup_seconds=round(scenario.setup_seconds, 2),
        idle_timeout_s=round(scenario.idle_timeout, 1),
        longest_resume_s=round(scenario.longest_resume, 2),
        admission_threshold_ms=round(1000 * scenario.admission.threshold),
        admission_waited_s=round(scenario.admission.waited, 1),
        replayed=sum(c.replayed for c in clients),
        duplicates=sum(c.duplicates for c in clients),
        out_of_order=sum(c.out_of_order for c in clients),
        app_handed_on=sum(c.app_entries for c in clients),
        app_lost=app_missing,
        app_out_of_order=sum(c.app_out_of_order for c in clients),
        app_streams_waiting_at_end=sum(len(c.sequencer.waiting()) for c in clients if c.sequencer),
        disconnect_codes=dict(sb.invocations.disconnect_codes),
        handler_errors=sb.handler_errors(),
    )
    assert unanswered == []
    assert refused == [], refused[:5]
    assert acked and owed > 0
    assert missing == 0, problems
    assert problems == []
    # What the application sees after the client library's ordering: everything owed, in order.
    assert app_missing == 0, [(c.user, c.sequencer and c.sequencer.waiting()) for c in clients]
    assert sum(c.app_out_of_order for c in clients) == 0
    assert sum(c.connections for c in clients) > 2 * len(clients)  # they did come back
    assert registry.items == 0, registry
    assert sb.handler_errors() == 0, sb.error_details()


def logged_id(sent: Sent) -> str | None:
    """The id of a message the server logged: acked (a DM to a user with no live connection
    too: it is stored for their resume)."""
    reply = sent.reply or {}
    if reply.get("type") == "ack":
        return str(reply["id"])
    return None
