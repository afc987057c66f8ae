"""Switchboard on fakes: no socket, no moto. Dispatch, the error mapping, removing closed
connections after a fan-out (and announcing their leaves once, without recursion), and the
hand-off to a continuation."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chalicelib import departures
from chalicelib.broadcaster import Broadcaster, PayloadTooLarge, Report
from chalicelib.config import EndpointRule, Settings
from chalicelib.errors import ContinuationBatchFailed
from chalicelib.idempotency import ClientMsgIdReused, SendInProgress
from chalicelib.limits import ALLOWED, Verdict
from chalicelib.management_api import Outcome
from chalicelib.message_log import Head, LogWriteError, Page
from chalicelib.presence import ENTER, LEAVE, Announcement, Removal, Roster
from chalicelib.protocol import Scope
from chalicelib.registry import ConnectionRecord, NotConnected, Removed, Target
from chalicelib.service import Switchboard
from tests.helpers import FakeGateway, message_event

# --- fakes -----------------------------------------------------------------------------------


class FakeSweep:
    def __init__(self, targets: list[Target]) -> None:
        self._targets = targets

    def start(self) -> None:
        """A send starts its audience's read before logging (service.Switchboard._audience)."""

    def __iter__(self) -> Iterator[Target]:
        return iter(self._targets)

    def rest(self) -> tuple[list[Target], list[Any]]:
        return [], []


class FakeRegistry:
    """Connections and their rooms in a dict; a "query" is ``(scope, name)``."""

    def __init__(self) -> None:
        self.conns: dict[str, ConnectionRecord] = {}
        self.lock = threading.Lock()

    def add(self, cid: str, user: str, *rooms: str, role: str | None = None) -> None:
        self.conns[cid] = ConnectionRecord(cid, user, 0, 10**10, None, role, frozenset(rooms))

    def get(self, cid: str) -> ConnectionRecord | None:
        return self.conns.get(cid)

    def now(self) -> float:
        return 1000.0

    def user_query(self, user: str) -> tuple[str, str]:
        return ("user", user)

    def room_query(self, room: str) -> tuple[str, str]:
        return ("room", room)

    def all_queries(self) -> list[tuple[str, None]]:
        return [("all", None)]

    def _matches(self, conn: ConnectionRecord, query: tuple[str, str | None]) -> bool:
        scope, name = query
        return (
            scope == "all"
            or (scope == "user" and conn.user_id == name)
            or (scope == "room" and name in conn.rooms)
        )

    def sweep(self, queries: list[tuple[str, str | None]]) -> FakeSweep:
        with self.lock:
            conns = sorted(self.conns.values(), key=lambda c: c.connection_id)
        return FakeSweep(
            [
                Target(c.connection_id, c.user_id)
                for c in conns
                if any(self._matches(c, q) for q in queries)
            ]
        )

    def all_connections(self) -> Iterator[Target]:
        return iter(self.sweep(self.all_queries()))

    def remove_connection(self, cid: str) -> Removed | None:
        with self.lock:
            conn = self.conns.pop(cid, None)
        return None if conn is None else Removed(conn.user_id, conn.rooms)


class FakePresence:
    """Presence as the service sees it: returns what to announce. Checks that no removal
    runs while an announcement is being made (a removal nested in an announcement)."""

    def __init__(self, registry: FakeRegistry, log: FakeLog) -> None:
        self.registry = registry
        self.log = log
        self.removed: list[str] = []
        self.announcing = 0
        self.nested = False

    def _users(self, room: str, but: str) -> set[str]:
        return {
            c.user_id
            for c in self.registry.conns.values()
            if room in c.rooms and c.connection_id != but
        }

    def join(
        self,
        conn: ConnectionRecord,
        room: str,
        quiet: bool = False,
        after: int | None = None,
        max_rooms: int | None = None,
    ) -> Announcement | None:
        first = conn.user_id not in self._users(room, conn.connection_id)
        self.registry.conns[conn.connection_id] = ConnectionRecord(
            conn.connection_id, conn.user_id, 0, 10**10, None, conn.role, conn.rooms | {room}
        )
        return Announcement(room, ENTER, conn.user_id, conn.connection_id) if first else None

    def small_with(self, room: str, user_id: str) -> bool:
        """Rooms are always small enough for events here (read beside a join)."""
        return True

    def leave(self, conn: ConnectionRecord, room: str) -> Announcement | None:
        self.registry.conns[conn.connection_id] = ConnectionRecord(
            conn.connection_id, conn.user_id, 0, 10**10, None, conn.role, conn.rooms - {room}
        )
        last = conn.user_id not in self._users(room, conn.connection_id)
        return Announcement(room, LEAVE, conn.user_id) if last else None

    def remove(self, cid: str) -> list[Announcement] | None:
        removal = self.removal(cid)
        return None if removal is None else removal.leaves

    def removal(self, cid: str) -> Removal | None:
        if self.announcing:
            self.nested = True
        removed = self.registry.remove_connection(cid)
        if removed is None:
            return None
        self.removed.append(cid)
        leaves = [
            Announcement(room, LEAVE, removed.user_id)
            for room in sorted(removed.rooms)
            if removed.user_id not in self._users(room, cid)
        ]
        return Removal(removed.user_id, removed.connected_at, leaves)

    def log_event(self, a: Announcement) -> dict[str, Any] | None:
        self.announcing += 1
        try:
            frame = {"type": "presence", "room": a.room, "event": a.event, "userId": a.user_id}
            return self.log.append(f"room:{a.room}", frame)
        finally:
            self.announcing -= 1

    def members(self, room: str) -> Roster:
        users = sorted(self._users(room, ""))
        return Roster(room, len(users), [{"userId": u, "connections": 1} for u in users])


FAKE_EPOCH = "fake-epoch"  # the real log creates one per stream with its counter


class FakeLog:
    def __init__(self) -> None:
        self.streams: dict[str, list[dict[str, Any]]] = {}
        self.fail: Exception | None = None

    def append(self, stream: str, frame: dict[str, Any]) -> dict[str, Any]:
        if self.fail is not None:
            raise self.fail
        seq = len(self.streams.get(stream, [])) + 1
        logged = {**frame, "stream": stream, "seq": seq, "epoch": FAKE_EPOCH}
        self.streams.setdefault(stream, []).append(logged)
        return logged

    def get(self, stream: str, seq: int) -> dict[str, Any] | None:
        frames = self.streams.get(stream, [])
        return frames[seq - 1] if 0 < seq <= len(frames) else None

    def head(self, stream: str) -> Head:
        frames = self.streams.get(stream, [])
        return Head(len(frames), 0, FAKE_EPOCH if frames else None)

    def read(self, stream: str, after: int, limit: int, head: Head | None = None) -> Page:
        frames = self.streams.get(stream, [])
        epoch = FAKE_EPOCH if frames else None
        return Page(stream, after, frames[after : after + limit], last=len(frames), epoch=epoch)


class FakeLimits:
    def __init__(self) -> None:
        self.verdict: Verdict = ALLOWED

    def take_frame(self, cid: str, cost: int = 1) -> Verdict:
        return self.verdict

    def take_replay(self, user: str, messages: int) -> Verdict:
        return ALLOWED

    def refund_replay(self, user: str, reserved: int, used: int) -> None: ...

    def slot_claims(self, user: str) -> list[Any] | None:
        return None  # as if DynamoDB could not say: register without a slot

    def room_refusal(self, conn: ConnectionRecord, room: str) -> str | None:
        return None


class FakeLedger:
    def claim(self, *args: Any) -> Any:
        return None

    def release(self, claim: Any) -> None: ...

    def complete(self, claim: Any, logged: Any) -> None: ...


class PresenceGone(FakeGateway):
    """A gateway where some connections answer 410 only to presence frames: closed after the
    message's fan-out, found by the announcement that follows it."""

    def __init__(self, *gone_on_presence: str) -> None:
        super().__init__()
        self.gone_on_presence = set(gone_on_presence)

    def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        if connection_id in self.gone_on_presence and b'"type":"presence"' in data:
            return Outcome.GONE
        return super().post(connection_id, data, endpoint)


class World:
    def __init__(self, gateway: FakeGateway | None = None, **settings: Any) -> None:
        self.registry = FakeRegistry()
        self.log = FakeLog()
        self.presence = FakePresence(self.registry, self.log)
        self.gateway = gateway or FakeGateway()
        self.limits = FakeLimits()
        base: dict[str, Any] = {
            "table_name": "t",
            "auth_mode": "none",
            "fanout_workers": 4,
            "endpoint_rule": EndpointRule(region="us-east-1"),
        }
        self.settings = Settings(**{**base, **settings})
        self.broadcaster = Broadcaster(self.gateway)
        self.switchboard = Switchboard(
            self.settings,
            self.registry,  # type: ignore[arg-type]
            self.gateway,  # type: ignore[arg-type]
            self.broadcaster,
            self.log,  # type: ignore[arg-type]
            sends=FakeLedger(),  # type: ignore[arg-type]
            limits=self.limits,  # type: ignore[arg-type]
            presence=self.presence,  # type: ignore[arg-type]
        )

    def send(self, cid: str, frame: Any) -> dict[str, Any]:
        before = len(self.gateway.sent.get(cid, []))
        assert self.switchboard.on_message(message_event(cid, frame)).status == 200
        replies = self.gateway.frames(cid)[before:]
        answers = [f for f in replies if f["type"] not in ("message", "presence")]
        assert len(answers) == 1, replies
        return answers[0]

    def presence_seen(self, cid: str) -> list[tuple[str, str]]:
        return [
            (f["event"], f["userId"]) for f in self.gateway.frames(cid) if f["type"] == "presence"
        ]


@pytest.fixture
def world() -> World:
    return World()


# --- dispatch --------------------------------------------------------------------------------


def test_ping_gets_a_pong_with_its_ref(world: World) -> None:
    assert world.send("a", {"action": "ping", "ref": 7}) == {"type": "pong", "ref": 7}


def test_an_unregistered_connection_is_told_to_reconnect(world: World) -> None:
    reply = world.send("ghost", {"action": "whoami"})
    assert (reply["type"], reply["code"]) == ("error", "not_found")


def test_malformed_frames_get_their_protocol_error(world: World) -> None:
    world.registry.add("a", "u1")
    assert world.send("a", "{nope")["code"] == "bad_json"
    assert world.send("a", {"action": "dance"})["code"] == "unknown_action"


def test_a_rate_limited_frame_is_refused_before_dispatch(world: World) -> None:
    world.registry.add("a", "u1")
    world.limits.verdict = Verdict(False, retry_after_ms=250)
    reply = world.send("a", {"action": "whoami", "ref": "r"})
    assert (reply["code"], reply["retryAfterMs"], reply["ref"]) == ("rate_limited", 250, "r")


def test_join_announces_the_enter_to_the_others_and_acks(world: World) -> None:
    world.registry.add("a", "u1", "lobby")
    world.registry.add("b", "u2")
    reply = world.send("b", {"action": "join", "room": "lobby", "ref": 1})
    assert reply == {
        "type": "ack",
        "delivered": 0,
        "failed": 0,
        "gone": 0,
        "room": "lobby",
        "joined": True,
        "ref": 1,
    }
    assert world.presence_seen("a") == [("enter", "u2")]
    assert world.presence_seen("b") == []  # the joining connection is not told


def test_send_room_logs_then_fans_out_to_members_but_the_sender(world: World) -> None:
    for cid, user in (("a", "u1"), ("b", "u2"), ("c", "u3")):
        world.registry.add(cid, user, "lobby")
    reply = world.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi", "ref": 2})
    assert (reply["type"], reply["delivered"], reply["stream"], reply["seq"]) == (
        "ack",
        2,
        "room:lobby",
        1,
    )
    message = [f for f in world.gateway.frames("b") if f["type"] == "message"]
    assert message == [world.log.streams["room:lobby"][0]]
    assert message[0]["id"] == reply["id"] and message[0]["room"] == "lobby"
    assert not any(f["type"] == "message" for f in world.gateway.frames("a"))


def test_send_message_to_a_user_without_connections_is_stored_not_refused(world: World) -> None:
    # Issue #22 item 9: no online oracle. Kept for the recipient's resume and acked as stored;
    # never not_found, never the recipient stream's stream/seq (how many DMs they got).
    world.registry.add("a", "u1")
    reply = world.send("a", {"action": "sendMessage", "targetUserId": "u9", "text": "hi"})
    assert reply == {"type": "ack", "stored": True, "id": reply["id"], "delivered": 0,
                     "failed": 0, "gone": 0}  # fmt: skip
    assert world.log.get("user:u9", 1) is not None
    # Without receipts (jwt's default), not even whether anyone got it.
    quiet = World(dm_delivery_receipts=False)
    quiet.registry.add("a", "u1")
    reply = quiet.send("a", {"action": "sendMessage", "targetUserId": "u9", "text": "hi"})
    assert reply == {"type": "ack", "stored": True, "id": reply["id"]}


def test_broadcast_all_needs_the_admin_role_with_auth(world: World) -> None:
    strict = World(auth_mode="jwt", jwt_secret="x" * 32)
    strict.registry.add("a", "u1")
    assert strict.send("a", {"action": "broadcastAll", "text": "hi"})["code"] == "forbidden"


# --- the error mapping -------------------------------------------------------------------------


def throttling() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "Query")


def _log_error(cause: Exception) -> LogWriteError:
    try:
        raise LogWriteError("no") from cause
    except LogWriteError as exc:
        return exc


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (NotConnected("a"), "not_found"),
        (PayloadTooLarge("payload is 200000 bytes"), "too_large"),
        (SendInProgress(), "rate_limited"),
        (ClientMsgIdReused(), "bad_request"),
        (throttling(), "rate_limited"),
        (ClientError({"Error": {"Code": "ValidationException"}}, "Query"), "internal"),
        (KeyError("surprise"), "internal"),
    ],
)
def test_every_error_of_a_command_becomes_its_frame(
    world: World, raised: Exception, code: str
) -> None:
    world.registry.add("a", "u1", "lobby")

    def boom(*args: Any) -> Any:
        raise raised

    world.registry.room_query = boom  # type: ignore[method-assign]
    reply = world.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi", "ref": 3})
    assert (reply["type"], reply["code"], reply["ref"]) == ("error", code, 3)


@pytest.mark.parametrize(
    ("cause", "code"),
    [
        (throttling(), "rate_limited"),
        (ClientError({"Error": {"Code": "InternalServerError"}}, "PutItem"), "internal"),
    ],
)
def test_a_message_the_log_refuses_is_not_sent(world: World, cause: Exception, code: str) -> None:
    world.registry.add("a", "u1", "lobby")
    world.registry.add("b", "u2", "lobby")
    world.log.fail = _log_error(cause)
    reply = world.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi"})
    assert reply["code"] == code and "nothing was sent" in reply["message"]
    assert world.gateway.frames("b") == []


# --- removing closed connections ---------------------------------------------------------------


def test_a_gone_recipient_is_removed_after_the_fan_out_and_its_leave_announced_once(
    world: World,
) -> None:
    for cid, user in (("a", "u1"), ("b", "u2"), ("c", "u3")):
        world.registry.add(cid, user, "lobby")
    world.gateway.outcomes["b"] = Outcome.GONE
    reply = world.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi"})
    assert (reply["delivered"], reply["gone"]) == (1, 1)
    assert world.presence.removed == ["b"] and world.registry.get("b") is None
    assert world.presence_seen("c") == [("leave", "u2")]
    assert world.presence_seen("a") == [("leave", "u2")]
    assert [f["event"] for f in world.log.streams["room:lobby"][1:]] == ["leave"]


def test_a_connection_found_gone_by_that_announcement_is_removed_without_nesting() -> None:
    world = World(PresenceGone("c"))
    for cid, user in (("a", "u1"), ("b", "u2"), ("c", "u3"), ("d", "u4")):
        world.registry.add(cid, user, "lobby")
    world.gateway.outcomes["b"] = Outcome.GONE
    world.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi"})
    # b from the message's fan-out; c from the announcement of b's leave: both removed, each
    # leave announced once, and no removal ran inside an announcement.
    assert world.presence.removed == ["b", "c"]
    assert world.presence_seen("d") == [("leave", "u2"), ("leave", "u3")]
    assert not world.presence.nested


def test_past_the_rounds_a_gone_connection_is_left_for_the_next_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(departures, "SETTLE_ROUNDS", 1)
    world = World(PresenceGone("c"))
    for cid, user in (("a", "u1"), ("b", "u2"), ("c", "u3")):
        world.registry.add(cid, user, "lobby")
    world.gateway.outcomes["b"] = Outcome.GONE
    world.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi"})
    assert world.presence.removed == ["b"] and world.registry.get("c") is not None
    world.gateway.outcomes["c"] = Outcome.GONE
    world.send("a", {"action": "sendRoom", "room": "lobby", "text": "again"})
    assert world.presence.removed == ["b", "c"]
    assert world.presence_seen("a") == [("leave", "u2"), ("leave", "u3")]


def test_a_failing_removal_is_counted_and_the_rest_go_on(world: World) -> None:
    for cid, user in (("a", "u1"), ("b", "u2"), ("c", "u3"), ("d", "u4")):
        world.registry.add(cid, user, "lobby")
    world.gateway.outcomes.update(b=Outcome.GONE, c=Outcome.GONE)
    removal = world.presence.removal

    def flaky(cid: str) -> Removal | None:
        if cid == "b":
            raise throttling()
        return removal(cid)

    world.presence.removal = flaky  # type: ignore[method-assign]
    reply = world.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi"})
    assert reply["gone"] == 2 and world.registry.get("b") is not None
    assert world.presence_seen("d") == [("leave", "u3")]


def test_a_sender_gone_before_its_reply_is_removed(world: World) -> None:
    world.registry.add("a", "u1", "lobby")
    world.registry.add("b", "u2", "lobby")
    world.gateway.outcomes["a"] = Outcome.GONE
    world.switchboard.on_message(message_event("a", {"action": "whoami"}))
    assert world.registry.get("a") is None and world.presence_seen("b") == [("leave", "u1")]


def test_disconnect_forgets_and_announces(world: World) -> None:
    from tests.helpers import disconnect_event

    world.registry.add("a", "u1", "lobby")
    world.registry.add("b", "u2", "lobby")
    assert world.switchboard.on_disconnect(disconnect_event("a")).status == 200
    assert world.registry.get("a") is None and world.presence_seen("b") == [("leave", "u1")]
    assert world.switchboard.forget("a") is False


# --- continuation --------------------------------------------------------------------------------


class FakeContinuation:
    def __init__(self) -> None:
        self.handed: list[tuple[int, str | None]] = []
        self.batches: list[list[tuple[str, str]]] = []

    def hand_off(
        self, report: Report, audience: Any, message: Any, exclude: str | None, scope: str | None
    ) -> Report:
        self.handed.append((len(report.unstarted), exclude))
        return report.continued_by(0)

    def run_batch(self, records: list[tuple[str, str]], after: Any) -> dict[str, Any]:
        self.batches.append(records)
        after(Report(gone=1, gone_ids=("b",)))
        return {"batchItemFailures": []}


def test_a_fan_out_stopped_at_its_deadline_is_handed_to_the_continuation(world: World) -> None:
    ticks = itertools.count()
    world.switchboard.broadcaster = Broadcaster(
        world.gateway, batch_size=2, deadline_seconds=5, clock=lambda: float(next(ticks))
    )
    continuation = FakeContinuation()
    world.switchboard.continuation = continuation  # type: ignore[assignment]
    for n in range(20):
        world.registry.add(f"c{n:02d}", f"u{n}")
    answer = world.switchboard.push(
        Scope.ALL, None, {"text": "hi"}, world.switchboard.authorize_http(None)
    )
    assert continuation.handed and continuation.handed[0][0] > 0
    assert answer["continued"] == continuation.handed[0][0] and answer["failed"] == 0


def test_a_fan_out_within_its_deadline_is_not_handed_off(world: World) -> None:
    continuation = FakeContinuation()
    world.switchboard.continuation = continuation  # type: ignore[assignment]
    world.registry.add("a", "u1")
    world.switchboard.push(Scope.USER, "u1", {"text": "hi"}, world.switchboard.authorize_http(None))
    assert continuation.handed == []


def test_continuation_jobs_run_and_their_gone_connections_are_removed(world: World) -> None:
    world.registry.add("a", "u1", "lobby")
    world.registry.add("b", "u2", "lobby")
    continuation = FakeContinuation()
    world.switchboard.continuation = continuation  # type: ignore[assignment]
    assert world.switchboard.continue_fan_out([("m1", "{}")]) == {"batchItemFailures": []}
    assert continuation.batches == [[("m1", "{}")]]
    assert world.registry.get("b") is None and world.presence_seen("a") == [("leave", "u2")]


def test_without_a_queue_continuation_jobs_go_back_to_sqs(world: World) -> None:
    # The packaged stack's mapping reports partial batch failures: every job is listed.
    world.switchboard.settings = replace(
        world.switchboard.settings, continuation_partial_batch=True
    )
    answer = world.switchboard.continue_fan_out([("m1", "{}"), ("m2", "{}")])
    assert answer == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}
    # chalice deploy's mapping would delete a batch whose invocation returned: it raises.
    world.switchboard.settings = replace(
        world.switchboard.settings, continuation_partial_batch=False
    )
    with pytest.raises(ContinuationBatchFailed, match="2 of 2"):
        world.switchboard.continue_fan_out([("m1", "{}"), ("m2", "{}")])


# --- HTTP ------------------------------------------------------------------------------------------


def test_push_answers_the_message_and_its_counts(world: World) -> None:
    world.registry.add("a", "u1", "lobby")
    answer = world.switchboard.push(
        Scope.ROOM, "lobby", {"text": "hi"}, world.switchboard.authorize_http(None)
    )
    assert answer["stream"] == "room:lobby" and answer["seq"] == 1 and answer["delivered"] == 1


@pytest.mark.parametrize(
    "body", [None, [], {"text": ""}, {"text": "hi", "clientMsgId": "no spaces"}]
)
def test_push_refuses_a_bad_body(world: World, body: Any) -> None:
    from chalicelib.errors import BadRequest

    with pytest.raises(BadRequest):
        world.switchboard.push(Scope.ALL, None, body, world.switchboard.authorize_http(None))


def test_kick_of_an_unknown_connection_is_not_found(world: World) -> None:
    from chalicelib.errors import NotFound

    with pytest.raises(NotFound):
        world.switchboard.kick("Qa1bCHk2IAMFZ8A=")


def test_without_a_queue_nothing_loads_the_continuation_module() -> None:
    import subprocess
    import sys

    code = (
        "import sys, chalicelib.service, chalicelib.wiring, chalicelib.departures\n"
        "print('chalicelib.continuation' in sys.modules)"
    )
    from pathlib import Path

    root = Path(__file__).parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "False"


def test_the_broadcaster_holds_no_way_back_into_the_service() -> None:
    import inspect

    parameters = inspect.signature(Broadcaster).parameters
    assert set(parameters) == {"gateway", "batch_size", "max_pending", "deadline_seconds", "clock"}
