"""Abrupt drops: clients vanish without a close handshake; the registry still converges to zero.

Three ways to vanish, three ways back to an empty registry:

- TCP reset, no close frame: the gateway sees the socket die and runs ``$disconnect`` (1006);
- half-open (the client stops reading and never sends a FIN): only the idle timeout notices;
  the gateway closes with 1001, gives up on the close handshake, and runs ``$disconnect``;
- ``$disconnect`` lost (DynamoDB throttles it away; AWS also calls it best effort): the
  connection stays registered until the next send to it answers 410 Gone and prunes it.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.reliability.conftest import Figures, StackFactory
from tests.reliability.ddb_faults import ThrottlingProxy
from tests.reliability.ledger import Sent, Session, check
from tests.reliability.scale import SCALE, run
from tests.reliability.stack import StackUnderTest, TableSnapshot
from tests.wsclient import WsClient, open_many

pytestmark = pytest.mark.timeout(SCALE.timeout)
ROOM = "lobby"


class Sender:
    """A long-lived client that sends to everyone and to ``ROOM``, one frame at a time."""

    def __init__(self, client: WsClient, name: str = "sender") -> None:
        self.client = client
        # How long a reply may take: raised by a scenario that measured its own set-up (a
        # send may queue behind as much serial work as the set-up was).
        self.timeout = 30.0
        self.session = Session(name, name, client.opened_at, tried_rooms={ROOM})
        self.sent: list[Sent] = []

    @classmethod
    async def open(cls, sb: StackUnderTest) -> Sender:
        client = await WsClient.open(sb.ws_url, user="sender")
        reply = await client.request({"action": "join", "room": ROOM})
        assert reply and reply.get("joined") is True, reply
        sender = cls(client)
        sender.session.rooms[ROOM] = time.monotonic()
        return sender

    async def send(self, scope: str) -> dict[str, object] | None:
        if scope == "all":
            frame = {"action": "broadcastAll", "text": "to everyone"}
        else:
            frame = {"action": "sendRoom", "room": ROOM, "text": "to the room"}
        sent_at = time.monotonic()
        reply = await self.client.request(frame, timeout=self.timeout)
        target = None if scope == "all" else ROOM
        self.sent.append(Sent(self.session.name, scope, target, sent_at, time.monotonic(), reply))
        return reply

    async def loop(self, stop: asyncio.Event, pause: float = 0.02, ping: bool = False) -> None:
        for n in range(100_000):
            if stop.is_set():
                return
            if ping:
                await self.client.request({"action": "ping"}, timeout=self.timeout)
            else:
                await self.send("all" if n % 2 else "room")
            await asyncio.sleep(pause)

    async def close(self) -> None:
        self.session.ended_at = await self.client.barrier()
        await self.client.close()
        self.session.messages = self.client.messages
        self.session.duplicates = self.client.duplicates


def _session(client: WsClient, name: str, joined_at: float) -> Session:
    return Session(
        name, str(client.user), client.opened_at, rooms={ROOM: joined_at}, tried_rooms={ROOM}
    )


def test_reset_connections_are_removed_by_disconnect(
    switchboard_factory: StackFactory, figures: Figures
) -> None:
    """Clients vanish (TCP reset) at random moments while messages fan out to them."""
    sb = switchboard_factory()
    rng = random.Random(2)
    users = [f"d{n}" for n in range(SCALE.drop_clients)]
    sessions: list[Session] = []

    async def vanish(client: WsClient, session: Session) -> None:
        await asyncio.sleep(rng.uniform(0.0, 2.0))
        # 400 barriers queue behind the $disconnects of those already gone: the measured wait.
        session.ended_at = await client.barrier(timeout=waits[0])
        await client.abort()
        session.messages, session.duplicates = client.messages, client.duplicates

    waits: list[float] = []

    async def scenario() -> tuple[Sender, TableSnapshot, dict[str, object] | None]:
        sender = await Sender.open(sb)
        keep = {await sender.client.whoami()}
        opening = time.monotonic()
        clients = await open_many(sb.ws_url, users, rooms=(ROOM,))
        joined = time.monotonic()
        # Every client's $disconnect (and the prunes of the sends racing them) is serial work
        # on this one-process stack, about as much as its $connect and join were: waits scale
        # with the measured set-up, never under their floor, so a slower machine waits longer.
        wait = max(30.0, 2 * (joined - opening))
        waits.append(wait)
        sender.timeout = wait
        stop = asyncio.Event()
        sending = asyncio.create_task(sender.loop(stop))
        pairs = [(c, _session(c, f"d{n}", joined)) for n, c in enumerate(clients)]
        sessions.extend(s for _, s in pairs)
        await asyncio.gather(*(vanish(c, s) for c, s in pairs))
        stop.set()
        await sending
        pending = await asyncio.to_thread(sb.wait_for_disconnects, wait, keep)
        assert pending == set(), f"{len(pending)} $disconnects never ran"
        registered = await asyncio.to_thread(sb.registry)
        last = await sender.send("room")  # every $disconnect ran: nothing left to prune
        await sender.close()
        return sender, registered, last

    sender, registered, last = run(scenario())
    sb.wait_for_disconnects(timeout=waits[0])
    registry = sb.wait_for_registry(lambda r: r.items == 0, timeout=waits[0] / 2)
    verdict = check([*sessions, sender.session], sender.sent)
    figures.record(
        "abrupt drops: TCP reset",
        **{
            **verdict.as_dict(),
            "clients": len(sessions),
            "messages": verdict.acked,
            "faults": "every client resets its TCP connection, no close frame",
            "leaked": registry.items,
            "wait_seconds": round(waits[0], 1),
            "disconnect_codes": dict(sb.invocations.disconnect_codes),
            "handler_errors": sb.handler_errors(),
        },
    )
    assert sb.invocations.disconnect_codes[1006] == len(sessions)
    # Once every $disconnect ran, only the sender (its membership, its presence) is registered.
    assert registered.items == 3 and registered.present == {(ROOM, "sender")}, registered
    assert last and (last["delivered"], last["gone"], last["failed"]) == (0, 0, 0), last
    assert verdict.ok(), verdict.problems
    assert verdict.failed_reported == 0
    assert registry.items == 0
    assert sb.handler_errors() == 0, sb.error_details()


def test_half_open_clients_are_closed_by_the_idle_timeout(
    switchboard_factory: StackFactory, figures: Figures
) -> None:
    """Clients stop reading and never close (half-open): only the idle timeout notices them."""
    idle, close_timeout = 2.0, 1.0
    sb = switchboard_factory(idle_timeout=idle, close_timeout=close_timeout)
    users = [f"h{n}" for n in range(SCALE.frozen_clients)]
    allowance: list[float] = []
    frozen_wall: list[float] = []
    keep: set[str] = set()

    async def scenario() -> tuple[Sender, float, TableSnapshot, dict[str, object] | None, float]:
        sender = await Sender.open(sb)
        keep.add(await sender.client.whoami())
        # While the frozen clients' $disconnects keep the stack busy, a reply to the sender may
        # take longer than the idle timeout: WebSocket pings keep it active regardless.
        sender.client.keep_alive(idle / 4)
        stop = asyncio.Event()
        # The sender stays active with pings; nothing is posted to the frozen clients (traffic
        # either way resets API Gateway's idle timer, so a half-open client that is still
        # being sent to is found by its full buffer, 429, not by the idle timeout).
        sending = asyncio.create_task(sender.loop(stop, pause=idle / 10, ping=True))
        # Set-up may take longer than the idle timeout on a slow machine: every client pings
        # until all are open and joined, then all go silent together; the idle clock of each
        # starts at its last ping, just before ``frozen_at``.
        opening = time.monotonic()
        clients = await open_many(sb.ws_url, users, rooms=(ROOM,), keep_alive=idle / 4)
        setup_seconds = time.monotonic() - opening
        for client in clients:
            client.freeze()
        frozen_at = time.monotonic()
        frozen_wall.append(time.time())
        # Once the idle timeout fires, the clients' $disconnects are serial work on this
        # one-process stack, about as much as their set-up was: allow that much, at least 10 s.
        allowance.append(max(10.0, setup_seconds))
        pending = await asyncio.to_thread(sb.wait_for_disconnects, idle + 1.5 * allowance[0], keep)
        converged = time.monotonic() - frozen_at
        stop.set()
        await sending
        assert pending == set(), f"{len(pending)} half-open connections never closed"
        registered = await asyncio.to_thread(sb.registry)
        last = await sender.send("all")
        await sender.close()
        for client in clients:
            await client.abort()
        return sender, converged, registered, last, setup_seconds

    sender, converged, registered, last, setup_seconds = run(scenario())
    sb.wait_for_disconnects(timeout=30)
    registry = sb.wait_for_registry(lambda r: r.items == 0, timeout=15)
    # When the gateway noticed each frozen client gone (its $disconnect's requestTimeEpoch),
    # seconds after they froze: the idle timeout itself, whatever the handlers' queue did after.
    requested = sb.invocations.disconnect_requested
    noticed = [requested[c] - frozen_wall[0] for c in sb.invocations.connected - keep]
    figures.record(
        "abrupt drops: half-open",
        clients=len(users),
        messages=len(sender.sent),  # the one broadcast after they were closed
        faults=f"clients stop reading, never close; idle timeout {idle:.0f}s",
        leaked=registry.items,
        lost="n/a (nobody reads)",
        converged_seconds=round(converged, 1),
        setup_seconds=round(setup_seconds, 1),
        noticed_seconds=[round(min(noticed), 2), round(max(noticed), 2)],
        disconnect_codes=dict(sb.invocations.disconnect_codes),
        handler_errors=sb.handler_errors(),
    )
    assert sb.invocations.disconnect_codes[1001] >= len(users)
    # Not early: a client's idle clock starts at its last keep-alive ping (at most idle/4
    # before the freeze), then the close handshake waits close_timeout for an answer.
    assert min(noticed) >= idle * 3 / 4 + close_timeout - 0.05, sorted(noticed)[:5]
    assert max(noticed) < idle + close_timeout + allowance[0], sorted(noticed)[-5:]
    assert converged < idle + allowance[0]
    assert registered.items == 3, registered  # the sender, its membership and presence
    assert last and (last["delivered"], last["gone"]) == (0, 0), last
    assert registry.items == 0
    assert sb.handler_errors() == 0, sb.error_details()


@pytest.mark.parametrize(
    ("throttled", "left_behind"),
    [
        pytest.param(("GetItem",), "connections and memberships", marks=pytest.mark.soak),
        (("DeleteItem",), "connections only"),
    ],
    ids=["nothing-removed", "memberships-removed"],
)
def test_lost_disconnects_are_pruned_on_the_next_send(
    throttling_switchboard: object,
    figures: Figures,
    throttled: tuple[str, ...],
    left_behind: str,
) -> None:
    """``$disconnect`` fails (DynamoDB throttles it past botocore's retries): the connections
    stay registered, and the next send that reaches them gets 410 and prunes them."""
    sb, proxy = throttling_switchboard()  # type: ignore[operator]
    assert isinstance(proxy, ThrottlingProxy)
    users = [f"g{n}" for n in range(SCALE.ghost_clients)]

    async def scenario() -> tuple[Sender, list[dict[str, object] | None]]:
        sender = await Sender.open(sb)
        await sender.client.whoami()
        clients = await open_many(sb.ws_url, users, rooms=(ROOM,))
        proxy.throttle({op: 1.0 for op in throttled})
        for n, client in enumerate(clients):
            await (client.abort() if n % 2 else client.close())
        deadline = time.monotonic() + 60
        while len(sb.invocations.disconnected) < len(clients) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        proxy.throttle({})
        replies = [await sender.send("room"), await sender.send("all")]
        await sender.close()
        return sender, replies

    sender, replies = run(scenario())
    ghosts = sb.app_log.count("disconnect", "registry_error")
    sb.wait_for_disconnects(timeout=30)
    registry = sb.wait_for_registry(lambda r: r.items == 0, timeout=15)
    room_reply, all_reply = replies
    figures.record(
        f"abrupt drops: $disconnect lost ({throttled[0]} throttled)",
        clients=len(users),
        messages=2,
        faults=f"DynamoDB {'+'.join(throttled)} 100% throttled during $disconnect",
        leaked=registry.items,
        lost=0,
        ghosts=ghosts,
        left_behind=left_behind,
        room_send=room_reply,
        all_send=all_reply,
        throttled_requests=proxy.throttled(),
        handler_errors=sb.handler_errors(),
    )
    assert ghosts == len(users), "the throttled $disconnects did not fail"
    assert room_reply and all_reply
    # The first send reaches every ghost in the room; each 410 prunes one.
    if left_behind == "connections and memberships":
        assert (room_reply["gone"], all_reply["gone"]) == (len(users), 0), replies
    else:  # memberships already gone: the room is empty, the broadcast finds the ghosts
        assert (room_reply["gone"], all_reply["gone"]) == (0, len(users)), replies
    assert room_reply["failed"] == all_reply["failed"] == 0
    assert registry.items == 0, registry
    assert sb.handler_errors() == 0, sb.error_details()
