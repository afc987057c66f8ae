"""Faults: API Gateway throttles and fails ``@connections`` posts; DynamoDB throttles handlers.

``@connections``: 20% of posts answered 429 ``LimitExceededException`` and 5% 500, on every
post (fan-out and the sender's own ack). Retries follow botocore's standard policy with
``MANAGEMENT_MAX_ATTEMPTS`` total attempts: raised to 10 (set in the gateway's env), every
live client gets every message; at the default 3, about 1.6% of posts still fail after
retries, and each report counts exactly the recipients that did not get it. An ack that
itself fails is never silent either: the handler's log line records ``reply``.

DynamoDB: a throttling proxy answers a share of the handlers' reads and transactions with
``ProvisionedThroughputExceededException``; past botocore's retries the sender gets a
``rate_limited`` error frame, and nothing of that frame was sent or changed.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.reliability.conftest import Figures, StackFactory
from tests.reliability.ddb_faults import ThrottlingProxy
from tests.reliability.ledger import Sent, Session, check
from tests.reliability.scale import SCALE, run
from tests.reliability.stack import StackUnderTest
from tests.wsclient import WsClient, open_many

pytestmark = pytest.mark.timeout(SCALE.timeout + 60)
ROOMS = ("alpha", "beta")
FANOUT_ACTIONS = ("BroadcastAll", "SendRoom", "SendMessage")


class Crowd:
    """Recipients in rooms (some users with two connections) and senders in every room."""

    def __init__(self, sb: StackUnderTest, clients: int, senders: int) -> None:
        self.sb = sb
        self.n_clients = clients
        self.n_senders = senders
        self.users = [f"f{n % max(1, clients * 2 // 3)}" for n in range(clients)]
        self.recipients: list[tuple[WsClient, Session]] = []
        self.senders: list[tuple[WsClient, Session]] = []

    @property
    def everyone(self) -> list[tuple[WsClient, Session]]:
        return self.recipients + self.senders

    async def open(self) -> None:
        clients = await open_many(self.sb.ws_url, self.users)
        for n, client in enumerate(clients):
            client.keep_frames = True
            session = Session(f"c{n}", self.users[n], client.opened_at)
            for i, room in enumerate(ROOMS):
                if n % (i + 2) == 0:
                    reply = await client.request({"action": "join", "room": room})
                    assert reply and reply.get("joined") is True, reply
                    session.rooms[room] = time.monotonic()
                    session.tried_rooms.add(room)
            self.recipients.append((client, session))
        names = [f"s{k}" for k in range(self.n_senders)]
        senders = await open_many(self.sb.ws_url, names, rooms=ROOMS)
        for name, client in zip(names, senders, strict=True):
            await client.whoami()
            client.keep_frames = True
            session = Session(name, name, client.opened_at, tried_rooms=set(ROOMS))
            session.rooms = dict.fromkeys(ROOMS, time.monotonic())
            self.senders.append((client, session))

    def frame(self, k: int, n: int) -> tuple[str, str | None, dict[str, Any]]:
        text = f"s{k} #{n}"
        kind = ("all", "room", "room", "user")[n % 4]
        if kind == "all":
            return kind, None, {"action": "broadcastAll", "text": text}
        if kind == "room":
            room = ROOMS[(n // 4 + k) % len(ROOMS)]
            return kind, room, {"action": "sendRoom", "room": room, "text": text}
        user = self.users[(k * 7 + n) % len(self.users)]
        return kind, user, {"action": "sendMessage", "targetUserId": user, "text": text}

    async def close(self) -> None:
        for client, session in self.everyone:
            session.ended_at = await client.barrier()
            await client.close()
            session.messages, session.duplicates = client.messages, client.duplicates
            session.stray = client.stray

    def ids_by_text(self) -> dict[str, str]:
        return {
            str(f["text"]): str(f["id"])
            for client, _ in self.everyone
            for f in client.message_frames
        }


def _fanout_records(sb: StackUnderTest, connection_id: str | None) -> list[dict[str, Any]]:
    return [
        m
        for m in list(sb.app_log.messages)
        if m.get("connectionId") == connection_id and m.get("action") in FANOUT_ACTIONS
    ]


async def _send_all(crowd: Crowd, k: int, messages: int, lost_acks: list[Sent]) -> list[Sent]:
    """Sender ``k`` sends one frame at a time: its ack, or (the ack was lost after its own
    retries) the handler's log line, which must then say ``reply``."""
    client, session = crowd.senders[k]
    sent: list[Sent] = []
    lost_seen = 0  # records of this sender's lost acks already matched to a message
    for n in range(messages):
        kind, target, frame = crowd.frame(k, n)
        sent_at = time.monotonic()
        ref = await client.send(frame)
        reply: dict[str, Any] | None = None
        for _ in range(600):  # at most 120 s, in 0.2 s steps
            reply = await client.reply(ref, timeout=0.2)
            if reply is not None:
                break
            # Frames go one at a time, so a new "reply" record is this frame's: earlier
            # ones were acked or matched already. (Records appear after the ack is posted,
            # so they are not matched by position.)
            lost = [r for r in _fanout_records(crowd.sb, client.connection_id) if "reply" in r]
            if len(lost) > lost_seen:
                record = lost[lost_seen]
                lost_seen += 1
                reply = {"type": "ack", "text": frame["text"], "lost": record["reply"]}
                reply.update({key: record[key] for key in ("delivered", "failed", "gone")})
                break
        message = Sent(session.name, kind, target, sent_at, time.monotonic(), reply)
        sent.append(message)
        if reply is not None and "lost" in reply:
            lost_acks.append(message)
    return sent


@pytest.mark.parametrize("attempts", [10, 3], ids=["attempts-10", "attempts-3"])
def test_connections_faults(
    switchboard_factory: StackFactory, figures: Figures, attempts: int
) -> None:
    sb = switchboard_factory(env={"MANAGEMENT_MAX_ATTEMPTS": str(attempts)})
    crowd = Crowd(sb, SCALE.fault_clients, SCALE.fault_senders)
    lost_acks: list[Sent] = []

    async def scenario() -> list[Sent]:
        await crowd.open()
        sb.gateway.set_faults(throttle_rate=0.2, error_rate=0.05, seed=attempts)
        batches = await asyncio.gather(
            *(
                _send_all(crowd, k, SCALE.fault_messages, lost_acks)
                for k in range(SCALE.fault_senders)
            )
        )
        sb.gateway.set_faults(throttle_rate=0.0, error_rate=0.0)
        await crowd.close()
        return list(itertools.chain.from_iterable(batches))

    started = time.monotonic()
    sent = run(scenario())
    seconds = time.monotonic() - started
    ids = crowd.ids_by_text()
    for message in lost_acks:  # the message id, from whoever received it
        assert message.reply is not None
        message.reply["id"] = ids.get(str(message.reply["text"]), f"lost:{message.reply['text']}")
    stats = sb.gateway.stats()
    sb.wait_for_disconnects(timeout=30)
    registry = sb.wait_for_registry(lambda r: r.items == 0, timeout=15)
    verdict = check([s for _, s in crowd.everyone], sent)
    figures.record(
        f"faults: @connections, {attempts} attempts",
        **{
            **verdict.as_dict(),
            "clients": len(crowd.everyone),
            "messages": verdict.acked,
            "faults": f"20% 429 + 5% 500 on every @connections POST; {attempts} attempts",
            "leaked": registry.items,
            "posts": stats.posts,
            "injected_429": stats.throttled,
            "injected_500": stats.injected_errors,
            "acks_lost_and_logged": len(lost_acks),
            "fanout_seconds": round(seconds, 1),
            "handler_errors": sb.handler_errors(),
        },
    )
    assert verdict.ok(), verdict.problems
    assert verdict.acked == SCALE.fault_senders * SCALE.fault_messages
    # Every recipient that did not get a message is one the report counted failed, and back.
    assert verdict.missing == verdict.failed_reported
    assert verdict.received == verdict.delivered_reported
    assert stats.throttled > 0 and stats.injected_errors > 0
    if attempts == 10:
        # 0.25**10 per post: a failure here is a one-in-a-million event per post.
        assert verdict.failed_reported + len(lost_acks) <= 1, verdict.as_dict()
    assert registry.items == 0
    assert sb.handler_errors() == 0, sb.error_details()


# Phases of DynamoDB throttling: (name, rates, frames each sender sends at once, replies
# allowed, soak only). A fully throttled call costs botocore's 4 attempts and up to 7 s of
# backoff, so the frames of a phase go out together. The first phase also throttles
# $connect's PutItem (see ``late``); "join+leave" is a join, then a leave of the same room.
DDB_PHASES: tuple[tuple[str, dict[str, float], tuple[str, ...], set[str], bool], ...] = (
    (
        "targets, joins and $connect 100%",
        {"Query": 1.0, "TransactWriteItems": 1.0, "PutItem": 1.0},
        ("room", "user", "join"),
        {"rate_limited"},
        False,
    ),
    (
        "mixed 50%",
        {"GetItem": 0.5, "Query": 0.5, "TransactWriteItems": 0.5},
        ("all", "room", "user", "whoami", "join+leave"),
        {"ack", "identity", "rate_limited", "not_found"},  # not_found: leave after a failed join
        True,
    ),
    # A frame's sender is read by the rate limit's UpdateItem (issue #26: ReturnValues), and
    # by a GetItem only when that write fails (the limit fails open): both throttled, the
    # frame cannot know its sender and is refused (GetItem alone no longer touches whoami).
    (
        "sender reads 100%",
        {"UpdateItem": 1.0, "GetItem": 1.0},
        ("whoami", "all"),
        {"rate_limited"},
        True,
    ),
)


def test_dynamodb_throttling_gets_the_sender_an_error_frame(
    throttling_switchboard: Any, figures: Figures
) -> None:
    sb, proxy = throttling_switchboard()
    assert isinstance(proxy, ThrottlingProxy)
    crowd = Crowd(sb, SCALE.ddb_clients, 3)
    replies: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
    unexpected: list[str] = []
    rooms_held: dict[str, set[str]] = {}
    counter = itertools.count()

    async def one(k: int, kind: str, allowed: set[str], room: str) -> Sent | None:
        if kind == "join+leave":
            await one(k, "join", allowed, room)
            return await one(k, "leave", allowed, room)
        client, session = crowd.senders[k]
        held = rooms_held.setdefault(str(client.connection_id), set(ROOMS))
        target: str | None = None
        if kind in ("all", "room", "user"):
            n = 4 * next(counter) + ("all", "room", "x", "user").index(kind)
            kind, target, frame = crowd.frame(k, n)
        elif kind in ("join", "leave"):
            frame = {"action": kind, "room": room}
        else:
            frame = {"action": kind}
        sent_at = time.monotonic()
        reply = await client.request(frame, timeout=60)
        replies.append((kind, frame, reply))
        outcome = None if reply is None else reply.get("code") or reply.get("type")
        if outcome not in allowed or (outcome == "not_found" and kind != "leave"):
            unexpected.append(f"{kind}: {reply}")
        if reply and reply.get("joined"):
            held.add(room)
        if reply and reply.get("left"):
            held.discard(room)
        if kind in ("all", "room", "user"):
            return Sent(session.name, kind, target, sent_at, time.monotonic(), reply)
        return None

    async def phase(kinds: tuple[str, ...], allowed: set[str], rounds: int) -> list[Sent]:
        """Every sender sends ``kinds`` x ``rounds`` at once (several requests in flight)."""
        jobs = [
            one(k, kind, allowed, f"extra-{k}-{r}")
            for k in range(len(crowd.senders))
            for r in range(rounds)
            for kind in kinds
        ]
        return [sent for sent in await asyncio.gather(*jobs) if sent is not None]

    async def scenario() -> tuple[list[Sent], list[int], dict[str, set[str]]]:
        await crowd.open()
        sent: list[Sent] = []
        rounds = max(1, SCALE.ddb_frames // 6)
        refused: list[int] = []

        async def late(n: int) -> None:
            """$connect registers with a PutItem: throttled past its retries, no handshake."""
            try:
                extra = await WsClient.open(sb.ws_url, user=f"late{n}")
            except InvalidStatus as exc:
                refused.append(exc.response.status_code)
            else:
                await extra.close()

        for name, rates, kinds, allowed, soak_only in DDB_PHASES:
            if soak_only and SCALE.name != "soak":
                continue
            proxy.throttle(rates)
            jobs = [phase(kinds, allowed, rounds if name.startswith("mixed") else 1)]
            if "PutItem" in rates:
                jobs += [late(n) for n in range(3)]
            sent += (await asyncio.gather(*jobs))[0]
        proxy.throttle({})
        registry = await asyncio.to_thread(sb.registry)
        registered = {cid: {r for r, c in registry.memberships if c == cid} for cid in rooms_held}
        await crowd.close()
        return sent, refused, registered

    sent, refused, registered = run(scenario())
    throttled = proxy.throttled()
    sb.wait_for_disconnects(timeout=30)
    registry = sb.wait_for_registry(lambda r: r.items == 0, timeout=15)
    verdict = check([s for _, s in crowd.everyone], sent)
    outcomes = collections.Counter(
        str(r.get("code") or r.get("type")) if r else "none" for _, _, r in replies
    )
    figures.record(
        "faults: DynamoDB throttling",
        **{
            **verdict.as_dict(),
            "clients": len(crowd.everyone),
            "messages": len(replies),
            "faults": "; ".join(
                f"{name}" for name, _, _, _, soak in DDB_PHASES if not soak or SCALE.name == "soak"
            ),
            "leaked": registry.items,
            "throttled_requests": throttled,
            "replies": dict(outcomes),
            "connects_refused": refused,
            "handler_errors": sb.handler_errors(),
        },
    )
    assert unexpected == []
    assert outcomes["rate_limited"] >= 3 * len(crowd.senders)  # every frame of the 100% phases
    assert refused == [500, 500, 500]
    # The registry changed exactly as the acks said: a throttled join or leave changed nothing.
    assert registered == rooms_held
    assert verdict.ok(), verdict.problems  # refused frames reached nobody
    assert verdict.missing == verdict.failed_reported == 0
    assert registry.items == 0
    assert sb.handler_errors() == 0, sb.error_details()
