"""The WebSocket test client every suite uses, on the ``websockets`` library: sync helpers
(``open_ws``, ``send``, ``recv_json``, ``quiet``) and ``WsClient``, an asyncio client that files
every frame it receives.

Test defaults: pings off (idle-timeout behaviour stays deterministic), no proxy from the
environment (everything talks to 127.0.0.1), bounded opening and closing handshakes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection as AsyncClientConnection
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from local_gateway import LocalGateway

# The ``ws_connect`` fixture (tests/conftest.py): ``open_ws`` closed at teardown.
WsConnect = Callable[..., ClientConnection]

# Called with every JSON frame ``recv_json``, ``send`` and ``WsClient`` receive, when set: the
# e2e suite sets a checker of docs/asyncapi.yaml here (tests/e2e/conftest.py).
frame_check: Callable[[Any], None] | None = None


def _received(frame: Any) -> Any:
    if frame_check is not None:
        frame_check(frame)
    return frame


def ws_url(target: LocalGateway | str, query: str = "") -> str:
    """The WebSocket URL of a started gateway (or ``target`` itself), with ``?query``."""
    if isinstance(target, LocalGateway):
        assert target.urls is not None, "gateway not started"
        url = target.urls.websocket
    else:
        url = target
    return url + (f"?{query}" if query else "")


def open_ws(target: LocalGateway | str, query: str = "", **options: Any) -> ClientConnection:
    """A sync client connected to ``target`` (close it, or use it as a context manager)."""
    options.setdefault("open_timeout", 10)
    options.setdefault("close_timeout", 2)
    options.setdefault("ping_interval", None)
    options.setdefault("proxy", None)
    return connect(ws_url(target, query), **options)


def recv_json(ws: ClientConnection, timeout: float = 5) -> Any:
    return _received(json.loads(ws.recv(timeout=timeout)))


def send(ws: ClientConnection, frame: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    """Send ``frame``; the next frame received (its reply, when nothing else is under way)."""
    ws.send(json.dumps(frame))
    reply: dict[str, Any] = recv_json(ws, timeout)
    return reply


def quiet(ws: ClientConnection, wait: float = 0.3) -> bool:
    """True if nothing arrives within ``wait`` seconds."""
    try:
        ws.recv(timeout=wait)
    except TimeoutError:
        return True
    return False


class WsClient:
    """A connected client. A reader task files ``message`` frames by id (and counts repeats)
    and hands every other frame to the request whose ``ref`` it carries (``stray`` if none).
    """

    _refs = itertools.count(1)

    def __init__(self, ws: AsyncClientConnection, user: str | None, opened_at: float) -> None:
        self.ws = ws
        self.user = user
        self.opened_at = opened_at
        self.connection_id: str | None = None
        self.messages: dict[str, float] = {}  # message id -> received at
        self.message_frames: list[dict[str, Any]] = []
        self.duplicates = 0
        self.stray: list[Any] = []  # replies nobody waited for, e.g. "Internal server error"
        self.presence: list[dict[str, Any]] = []  # presence events, in arrival order
        # With keep_frames: messages and presence events both, in arrival order (a room's
        # stream numbers both, so an application orders them together).
        self.entries: list[dict[str, Any]] = []
        self._pending: dict[str | int, asyncio.Future[dict[str, Any]]] = {}
        self.closed_at: float | None = None
        self.keep_frames = False
        self._keepalive: asyncio.Task[None] | None = None
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
        ws = await async_connect(
            ws_url(url, query),
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
                    frame = _received(json.loads(raw))
                except ValueError:
                    frame = {"unparsed": raw if isinstance(raw, str) else raw.hex()}
                if isinstance(frame, dict) and frame.get("type") == "replay":
                    # A resume's missed entries of one stream: filed as if each came alone,
                    # marked replayed (as the resume used to send them).
                    for entry in frame.get("messages") or []:
                        self._file({**entry, "replayed": True})
                elif isinstance(frame, dict) and frame.get("type") in ("message", "presence"):
                    self._file(frame)
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

    def _file(self, frame: dict[str, Any]) -> None:
        """A message (by id, counting repeats) or a presence event (in arrival order)."""
        if self.keep_frames:
            self.entries.append(frame)
        if frame.get("type") == "presence":
            self.presence.append(frame)  # someone entered or left a room: no reply
            return
        mid = str(frame.get("id"))
        if mid in self.messages:
            self.duplicates += 1
        else:
            self.messages[mid] = time.monotonic()
        if self.keep_frames:
            self.message_frames.append(frame)

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

    def keep_alive(self, interval: float) -> None:
        """Send a WebSocket ping every ``interval`` seconds until ``stop_keeping_alive``,
        ``freeze``, ``close`` or ``abort``: the gateway counts control frames as activity, so
        a client waiting for the others to be set up is not closed by a short idle timeout."""
        self.stop_keeping_alive()
        self._keepalive = asyncio.create_task(self._ping_every(interval))

    def stop_keeping_alive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None

    async def _ping_every(self, interval: float) -> None:
        try:
            while True:
                await self.ws.ping()  # no wait for the pong: sending is the activity
                await asyncio.sleep(interval)
        except ConnectionClosed:
            pass

    async def close(self, code: int = 1000) -> None:
        self.stop_keeping_alive()
        await self.ws.close(code)
        await self._finish()

    async def abort(self) -> None:
        """Vanish without a close frame: the TCP connection is reset."""
        self.stop_keeping_alive()
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
        await self._finish()

    def freeze(self) -> None:
        """Stop reading and never answer: a half-open client (only an idle timeout notices)."""
        self.stop_keeping_alive()
        transport = self.ws.transport
        if transport is not None:
            transport.pause_reading()

    async def _finish(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), 10)
        except TimeoutError:
            self._reader.cancel()


async def open_many(
    url: str,
    users: list[str],
    concurrency: int = 32,
    rooms: tuple[str, ...] = (),
    keep_alive: float | None = None,
) -> list[WsClient]:
    """Connect one client per user (``concurrency`` handshakes at a time), joined to ``rooms``.
    With ``keep_alive``, each client pings at that interval from its opening on (see
    ``WsClient.keep_alive``): set-up then takes as long as the machine needs, whatever the
    gateway's idle timeout."""
    gate = asyncio.Semaphore(concurrency)

    async def one(user: str) -> WsClient:
        async with gate:
            client = await WsClient.open(url, user=user)
            if keep_alive is not None:
                client.keep_alive(keep_alive)
            for room in rooms:
                reply = await client.request({"action": "join", "room": room}, timeout=30)
                assert reply and reply.get("joined") is True, reply
            return client

    return list(await asyncio.gather(*(one(user) for user in users)))
