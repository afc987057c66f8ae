"""What the reliability tests share: the scale knob, the gateway's counters, registry scans and an
asyncio WebSocket client that files every frame it receives.

Everything talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from local_gateway import Invocation, InvocationLog, LocalGateway

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE = "switchboard-reliability-connections"


# --- scale ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """Sizes of every scenario: ``small`` runs in ``make test``, ``soak`` in ``make soak``."""

    name: str
    # churn
    churn_sessions: int
    churn_min_sessions: int  # the churn deadline may stop it earlier, not before this
    churn_concurrency: int
    churn_users: int
    churn_rooms: int
    churn_senders: int
    churn_residents: int  # clients there for the whole churn
    churn_seconds: float
    churn_lifetime: tuple[float, float]
    # abrupt drops
    drop_clients: int
    frozen_clients: int
    ghost_clients: int
    # @connections faults
    fault_clients: int
    fault_senders: int
    fault_messages: int  # per sender
    # DynamoDB throttling
    ddb_clients: int
    ddb_frames: int  # per sender
    # fuzzing
    fuzz_examples: int
    auth_fuzz_examples: int
    # pytest-timeout for the larger tests
    timeout: int


SCALES = {
    "small": Scale(
        name="small",
        churn_sessions=120,
        churn_min_sessions=100,
        churn_concurrency=40,
        churn_users=30,
        churn_rooms=4,
        churn_senders=2,
        churn_residents=8,
        churn_seconds=8.0,
        churn_lifetime=(0.2, 1.5),
        drop_clients=60,
        frozen_clients=20,
        ghost_clients=20,
        fault_clients=16,
        fault_senders=4,
        fault_messages=3,
        ddb_clients=12,
        ddb_frames=6,
        fuzz_examples=250,
        auth_fuzz_examples=40,
        timeout=90,
    ),
    "soak": Scale(
        name="soak",
        churn_sessions=1500,
        churn_min_sessions=600,
        churn_concurrency=150,
        churn_users=150,
        churn_rooms=8,
        churn_senders=3,
        churn_residents=20,
        churn_seconds=90.0,
        churn_lifetime=(0.5, 6.0),
        drop_clients=400,
        frozen_clients=100,
        ghost_clients=200,
        fault_clients=100,
        fault_senders=8,
        fault_messages=10,
        ddb_clients=60,
        ddb_frames=40,
        fuzz_examples=2500,
        auth_fuzz_examples=300,
        timeout=420,
    ),
}


def scale() -> Scale:
    name = os.environ.get("RELIABILITY_SCALE", "small").strip().lower() or "small"
    if name not in SCALES:
        raise ValueError(f"RELIABILITY_SCALE must be one of {sorted(SCALES)}, got {name!r}")
    return SCALES[name]


SCALE = scale()


# --- the gateway's and the app's own accounts -------------------------------------------------


class CountingInvocationLog(InvocationLog):
    """The gateway's invocation log, plus counters that survive its bounded window.

    Counts finished invocations per route, keeps every failed one (bounded) and the ids of
    connections whose ``$connect`` succeeded and whose ``$disconnect`` finished.
    """

    def __init__(self, maxlen: int = 500) -> None:
        super().__init__(maxlen)
        self.lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self.errors: list[Invocation] = []
        self.connected: set[str] = set()
        self.refused: collections.Counter[int] = collections.Counter()
        self.disconnected: set[str] = set()
        self.disconnect_codes: collections.Counter[int] = collections.Counter()

    def append(self, record: Invocation) -> None:
        with self.lock:
            self.counts[record.route_key] += 1
            if record.error or record.timed_out:
                self.counts["errors"] += 1
                if len(self.errors) < 50:
                    self.errors.append(record)
            if record.route_key == "$connect":
                status = (record.result or {}).get("statusCode")
                if status == 200:
                    self.connected.add(record.connection_id)
                elif isinstance(status, int):
                    self.refused[status] += 1
            elif record.route_key == "$disconnect":
                self.disconnected.add(record.connection_id)
                code = record.event["requestContext"].get("disconnectStatusCode")
                self.disconnect_codes[int(code or 0)] += 1
        super().append(record)

    def pending_disconnects(self) -> set[str]:
        with self.lock:
            return self.connected - self.disconnected

    def error_summary(self) -> list[str]:
        with self.lock:
            return [
                f"{r.route_key} {r.connection_id}: {(r.error or 'timed out')[-400:]}"
                for r in self.errors
            ]


class AppLog(logging.Handler):
    """The app's structured log (one JSON line per handled event), counted instead of printed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        self.errors: list[str] = []
        self.messages: list[dict[str, Any]] = []  # every "message" event's record
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        try:
            fields = json.loads(text)
        except ValueError:
            fields = None
        with self._lock:
            if not isinstance(fields, dict):
                # Only unstructured lines are logging.exception()s of unexpected errors.
                if record.levelno >= logging.WARNING and len(self.errors) < 50:
                    self.errors.append(
                        text + (f"\n{record.exc_info[1]!r}" if record.exc_info else "")
                    )
                self.outcomes[("unstructured", logging.getLevelName(record.levelno))] += 1
                return
            outcome = str(fields.get("outcome", "?"))
            self.outcomes[(str(fields.get("event", "?")), outcome)] += 1
            if outcome in ("exception", "internal_error") and len(self.errors) < 50:
                self.errors.append(text)
            if fields.get("event") == "message":
                self.messages.append(fields)

    def count(self, event: str, outcome: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (e, o), n in self.outcomes.items()
                if e == event and (outcome is None or o == outcome)
            )

    def handler_errors(self) -> int:
        with self._lock:
            return sum(
                n
                for (e, o), n in self.outcomes.items()
                if o in ("exception", "internal_error") or (e == "unstructured" and o != "INFO")
            )


class StackUnderTest:
    """The switchboard app behind a started LocalGateway, with its accounts."""

    def __init__(self, gateway: LocalGateway, app_log: AppLog, dynamodb_url: str) -> None:
        self.gateway = gateway
        self.app_log = app_log
        self.dynamodb_url = dynamodb_url  # where the test scans: never through a fault proxy
        self.invocations: CountingInvocationLog = gateway.invocations  # type: ignore[assignment]

    @property
    def ws_url(self) -> str:
        assert self.gateway.urls is not None
        return self.gateway.urls.websocket

    @property
    def rest_url(self) -> str:
        assert self.gateway.urls is not None and self.gateway.urls.rest is not None
        return self.gateway.urls.rest

    def handler_errors(self) -> int:
        """Failed or timed-out handler invocations, and errors the app itself logged."""
        return self.invocations.counts["errors"] + self.app_log.handler_errors()

    def error_details(self) -> list[str]:
        return self.invocations.error_summary() + self.app_log.errors

    # -- the registry, as a test may read it (a Scan: the app never scans) --------------------

    def scan(self) -> list[dict[str, Any]]:
        client = boto3.client(
            "dynamodb",
            endpoint_url=self.dynamodb_url,
            region_name=self.gateway.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": self.gateway.table_name, "ConsistentRead": True}
        for _ in range(10_000):
            page = client.scan(**kwargs)
            items.extend(page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return items

    def registry(self) -> TableSnapshot:
        return TableSnapshot.of(self.scan())

    def wait_for_disconnects(
        self, timeout: float = 30.0, keep: frozenset[str] | set[str] = frozenset()
    ) -> set[str]:
        """Wait until every connection that connected, but those in ``keep``, has had its
        ``$disconnect`` run; the ones still pending."""
        deadline = time.monotonic() + timeout
        while True:
            pending = self.invocations.pending_disconnects() - keep
            if not pending or time.monotonic() > deadline:
                return pending
            time.sleep(0.05)

    def wait_for_registry(self, predicate: Any, timeout: float = 30.0) -> TableSnapshot:
        deadline = time.monotonic() + timeout
        while True:
            registry = self.registry()
            if predicate(registry) or time.monotonic() > deadline:
                return registry
            time.sleep(0.1)


@dataclass
class TableSnapshot:
    """A Scan of the table, sorted into connection items and room memberships."""

    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    memberships: set[tuple[str, str]] = field(default_factory=set)  # (room, connectionId)
    other: int = 0

    @classmethod
    def of(cls, items: list[dict[str, Any]]) -> TableSnapshot:
        registry = cls()
        for item in items:
            pk, sk = item["PK"]["S"], item["SK"]["S"]
            if pk.startswith("CONN#") and sk == "CONN":
                registry.connections[pk[5:]] = item
            elif pk.startswith("ROOM#") and sk.startswith("CONN#"):
                registry.memberships.add((pk[5:], sk[5:]))
            else:
                registry.other += 1
        return registry

    @property
    def items(self) -> int:
        return len(self.connections) + len(self.memberships) + self.other

    def owners(self) -> set[str]:
        """Every connection id that has any item."""
        return set(self.connections) | {cid for _, cid in self.memberships}


# --- an asyncio WebSocket client that files what it receives ---------------------------------


class WsClient:
    """A connected client. A reader task files ``message`` frames by id (and counts repeats)
    and hands every other frame to the request whose ``ref`` it carries (``stray`` if none).
    """

    _refs = itertools.count(1)

    def __init__(self, ws: ClientConnection, user: str | None, opened_at: float) -> None:
        self.ws = ws
        self.user = user
        self.opened_at = opened_at
        self.connection_id: str | None = None
        self.messages: dict[str, float] = {}  # message id -> received at
        self.message_frames: list[dict[str, Any]] = []
        self.duplicates = 0
        self.stray: list[Any] = []  # replies nobody waited for, e.g. "Internal server error"
        self._pending: dict[str | int, asyncio.Future[dict[str, Any]]] = {}
        self.closed_at: float | None = None
        self.keep_frames = False
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(
        cls, url: str, query: str = "", user: str | None = None, timeout: float = 15.0, **kw: Any
    ) -> WsClient:
        if user is not None and not query:
            query = f"userId={user}"
        kw.setdefault("ping_interval", None)
        kw.setdefault("close_timeout", 2)
        kw.setdefault("max_queue", None)
        ws = await connect(
            url + (f"?{query}" if query else ""),
            open_timeout=timeout,
            proxy=None,
            compression=None,
            **kw,
        )
        return cls(ws, user, time.monotonic())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                try:
                    frame = json.loads(raw)
                except ValueError:
                    frame = {"unparsed": raw if isinstance(raw, str) else raw.hex()}
                if isinstance(frame, dict) and frame.get("type") == "message":
                    mid = str(frame.get("id"))
                    if mid in self.messages:
                        self.duplicates += 1
                    else:
                        self.messages[mid] = time.monotonic()
                    if self.keep_frames:
                        self.message_frames.append(frame)
                elif isinstance(frame, dict) and frame.get("ref") in self._pending:
                    future = self._pending[frame["ref"]]
                    if not future.done():
                        future.set_result(frame)
                    else:
                        self.stray.append(frame)  # a second reply to one request
                else:
                    self.stray.append(frame)  # e.g. API Gateway's "Internal server error"
        except ConnectionClosed:
            pass
        finally:
            self.closed_at = time.monotonic()

    async def request(
        self, frame: dict[str, Any], timeout: float = 30.0, ref: str | int | None = None
    ) -> dict[str, Any] | None:
        """Send ``frame`` with a fresh ref; its reply, or None if none came within ``timeout``."""
        ref = await self.send(frame, ref)
        return await self.reply(ref, timeout)

    async def send(self, frame: dict[str, Any], ref: str | int | None = None) -> str | int:
        """Send ``frame`` with a ref (fresh unless given); ``reply(ref)`` waits for the answer.
        Several requests may be in flight."""
        ref = ref if ref is not None else f"r{next(self._refs)}"
        self._pending[ref] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps({**frame, "ref": ref}))
        return ref

    async def reply(self, ref: str | int, timeout: float = 30.0) -> dict[str, Any] | None:
        """The reply carrying ``ref``, or None after ``timeout`` (ask again to keep waiting)."""
        future = self._pending.get(ref)
        if future is None:
            raise KeyError(f"no request with ref {ref!r} in flight")
        try:
            reply: dict[str, Any] = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return None
        self._pending.pop(ref, None)
        return reply

    async def whoami(self) -> str:
        reply = await self.request({"action": "whoami"}, timeout=15)
        assert reply and reply.get("type") == "identity", reply
        self.connection_id = str(reply["connectionId"])
        return self.connection_id

    async def barrier(self, timeout: float = 15.0) -> float:
        """A ping round trip: every frame posted to this socket before the returned time
        has been read when this returns (the pong is posted after them, on the same socket).
        """
        started = time.monotonic()
        reply = await self.request({"action": "ping"}, timeout=timeout)
        assert reply and reply.get("type") == "pong", reply
        return started

    async def close(self, code: int = 1000) -> None:
        await self.ws.close(code)
        await self._finish()

    async def abort(self) -> None:
        """Vanish without a close frame: the TCP connection is reset."""
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
        await self._finish()

    def freeze(self) -> None:
        """Stop reading and never answer: a half-open client (only an idle timeout notices)."""
        transport = self.ws.transport
        if transport is not None:
            transport.pause_reading()

    async def _finish(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), 10)
        except TimeoutError:
            self._reader.cancel()


def run(coro: Any, timeout: float = SCALE.timeout - 20) -> Any:
    """Run a scenario on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def open_many(
    url: str, users: list[str], concurrency: int = 32, rooms: tuple[str, ...] = ()
) -> list[WsClient]:
    """Connect one client per user (``concurrency`` handshakes at a time), joined to ``rooms``."""
    gate = asyncio.Semaphore(concurrency)

    async def one(user: str) -> WsClient:
        async with gate:
            client = await WsClient.open(url, user=user)
            for room in rooms:
                reply = await client.request({"action": "join", "room": room}, timeout=30)
                assert reply and reply.get("joined") is True, reply
            return client

    return list(await asyncio.gather(*(one(user) for user in users)))
