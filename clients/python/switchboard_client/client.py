"""The connection state machine: connect, keep alive, reconnect, resume, send with acks.

Modelled on Ably's connection states and socket.io-client's reconnection manager: explicit
states (``connecting``, ``open``, ``reconnecting``, ``closed``), one timer per state (the
backoff delay while reconnecting; the keepalive and the planned-reconnect timers while open),
state changes reported as events, and no hidden retries: a failed connection attempt is
retried only by the reconnect loop, with exponential backoff and full jitter
(https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/), forever unless
``max_attempts`` says otherwise.

After every (re)connect, before the client reports ``open``: ``whoami``, rejoin the remembered
rooms, ``resume`` every stream from its last delivered seq, page ``history`` while a stream is
``truncated``; then the sends queued meanwhile go out, in the order they were made, each with
the same ``clientMsgId`` as on any earlier try. A re-sent send answered ``rate_limited`` (its
first try still being logged on the server: "in progress", or the connection's frame rate) is
asked again with that id after ``retryAfterMs`` (or ``IN_PROGRESS_RETRY`` when the server gives
none), within the send's timeout: the app made one call, and the server answers a repeat of a
logged send with its original ack (``"duplicate": true``).

Rooms' presence events (a user entered or left) are logged in the room's stream and take seqs
there: they go through the same ordering and dedupe as messages and reach ``on_presence``
listeners, in seq order with the room's messages.

API Gateway facts behind the timers: a connection is closed after 10 minutes without a frame
from the client and after 2 hours in any case
(https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import json
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

from websockets.exceptions import ConnectionClosed, WebSocketException

from switchboard_client.ordering import Entry, Message, Presence, Sequencer, Stats, entry_from_frame
from switchboard_client.store import MemoryStore, SeqStore

log = logging.getLogger("switchboard_client")

# API Gateway's limits, and our margins under them.
IDLE_TIMEOUT = 600.0
MAX_CONNECTION_SECONDS = 7200.0
DEFAULT_PING_INTERVAL = 300.0  # well under the 10-minute idle timeout
DEFAULT_MAX_CONNECTION_AGE = MAX_CONNECTION_SECONDS - 300.0  # reconnect 5 minutes early
MAX_RESUME_STREAMS = 100  # the server's limit per resume frame
HISTORY_PAGE = 100  # the server's largest history page
IN_PROGRESS_RETRY = 0.25  # seconds before asking again about a send still in progress

Frame = dict[str, Any]


class State(enum.StrEnum):
    CONNECTING = "connecting"  # the first connection attempt (until resumed)
    OPEN = "open"  # resumed; sends go out at once
    RECONNECTING = "reconnecting"  # lost: waiting out the backoff, or connecting again
    CLOSED = "closed"  # close() was called, or the client gave up: final


@dataclass(frozen=True)
class StateChange:
    previous: State
    current: State
    reason: str = ""
    retry_in: float | None = None  # RECONNECTING: seconds until the next attempt
    attempt: int = 0


class SwitchboardError(Exception):
    """A request answered with an ``error`` frame: ``code`` is the frame's (``forbidden``,
    ``not_found``, ...), ``frame`` the whole frame. ``retry_after_ms``: on
    ``rate_limited``, how long the server asks to wait, when it says."""

    def __init__(self, code: str, message: str, frame: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.frame: Mapping[str, Any] = frame or {}
        self.retry_after_ms = _retry_after_ms(self.frame)


class RequestTimeout(SwitchboardError, TimeoutError):
    """No answer within the request timeout. A send that had gone out may still be delivered."""

    def __init__(self, message: str) -> None:
        super().__init__("timeout", message)


class ClientClosed(SwitchboardError):
    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__("closed", message)


class QueueFull(SwitchboardError):
    def __init__(self, limit: int) -> None:
        super().__init__("queue_full", f"{limit} sends already wait for the connection")


class ConnectionLost(Exception):
    """The socket is gone (a transport raises it from ``recv`` and ``send``)."""


class Transport(Protocol):
    """One WebSocket connection, text frames only."""

    async def send(self, data: str) -> None: ...

    async def recv(self) -> str: ...

    async def close(self) -> None: ...


Connector = Callable[[str], Awaitable[Transport]]


class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` waits a uniform random time in
    ``[0, min(cap, base * 2**n)]`` (AWS Architecture Blog, "Exponential Backoff And Jitter":
    full jitter spreads a crowd of reconnecting clients best)."""

    def __init__(self, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None):
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base = base
        self.cap = cap
        self._rng = rng or random.Random()

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * float(2 ** min(attempt, 62)))

    def delay(self, attempt: int) -> float:
        return self._rng.uniform(0.0, self.ceiling(attempt))


class _WebSocketTransport:
    """``websockets``' asyncio client behind ``Transport``."""

    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def send(self, data: str) -> None:
        try:
            await self._ws.send(data)
        except ConnectionClosed as exc:
            raise ConnectionLost(str(exc)) from exc

    async def recv(self) -> str:
        try:
            data = await self._ws.recv()
        except ConnectionClosed as exc:
            raise ConnectionLost(str(exc)) from exc
        return data if isinstance(data, str) else bytes(data).decode("utf-8", "replace")

    async def close(self) -> None:
        await self._ws.close()


def websocket_connector(**options: Any) -> Connector:
    """A connector on ``websockets.asyncio.client.connect``; ``options`` go to it. Its own
    ping is off: the keepalive is a ``ping`` frame, which API Gateway counts as activity."""
    from websockets.asyncio.client import connect

    options.setdefault("ping_interval", None)
    options.setdefault("close_timeout", 2)

    async def open_transport(url: str) -> Transport:
        return _WebSocketTransport(await connect(url, **options))

    return open_transport


@dataclass
class _Request:
    frame: Frame
    future: asyncio.Future[Frame]
    internal: bool  # the client's own (whoami, resume, ping...): never queued nor re-sent
    session: int = 0  # the session it was last sent on (0: not yet)
    resent: bool = False  # sent again on a later session: its first try may have gone through


class Client:
    """A switchboard connection that survives reconnects. Use it as::

        client = Client(url, user_id="u_1")          # or token="<JWT>"
        client.on_message(lambda m: print(m.stream, m.seq, m.text))
        await client.connect()
        await client.join("lobby")
        ack = await client.send_room("lobby", "hi")  # {"type": "ack", "stream": ..., "seq": ...}
        await client.close()

    Every message reaches ``on_message`` callbacks once per ``(stream, seq)``, in seq order per
    stream. Sends resolve with the ack frame or raise ``SwitchboardError`` (the error frame's
    ``code``), ``RequestTimeout`` after ``request_timeout`` seconds, ``QueueFull`` or
    ``ClientClosed``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        user_id: str | None = None,
        store: SeqStore | None = None,
        backoff: Backoff | None = None,
        max_attempts: int | None = None,
        request_timeout: float = 10.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = DEFAULT_PING_INTERVAL,
        max_connection_age: float | None = DEFAULT_MAX_CONNECTION_AGE,
        gap_hold: float = 0.5,
        max_queue: int = 1000,
        connector: Connector | None = None,
    ) -> None:
        if token is not None and user_id is not None:
            raise ValueError("give a token or a user id, not both")
        query = {"token": token} if token is not None else {}
        if user_id is not None:
            query = {"userId": user_id}
        self._url = url + (("&" if "?" in url else "?") + urlencode(query) if query else "")
        self._store: SeqStore = store if store is not None else MemoryStore()
        self._sequencer = Sequencer(self._store.load())
        self._backoff = backoff or Backoff()
        self._max_attempts = max_attempts
        self._request_timeout = request_timeout
        self._open_timeout = open_timeout
        self._ping_interval = ping_interval
        self._max_connection_age = max_connection_age
        self._gap_hold = gap_hold
        self._max_queue = max_queue
        self._connector = connector or websocket_connector()

        self.state = State.CLOSED
        self.connection_id: str | None = None
        self.user_id: str | None = user_id
        self.rooms: set[str] = set()  # remembered: rejoined after every reconnect
        self.reconnects = 0
        self._started = False
        self._closing = False
        self._refs = itertools.count(1)
        self._requests: dict[int, _Request] = {}
        self._session = 0
        self._ready = False  # open, resumed and not draining: user sends go out at once
        self._transport: Transport | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._gap_tasks: dict[str, asyncio.Task[None]] = {}
        self._planned = asyncio.Event()
        self._state_listeners: list[Callable[[StateChange], None]] = []
        self._message_listeners: list[Callable[[Message], None]] = []
        self._presence_listeners: list[Callable[[Presence], None]] = []
        self.retried = 0  # re-sent sends answered rate_limited and asked again

    # --- events --------------------------------------------------------------------------

    def on_message(self, listener: Callable[[Message], None]) -> None:
        self._message_listeners.append(listener)

    def on_presence(self, listener: Callable[[Presence], None]) -> None:
        """Rooms' enter/leave events, once per (stream, seq), in order with the messages."""
        self._presence_listeners.append(listener)

    def on_state(self, listener: Callable[[StateChange], None]) -> None:
        self._state_listeners.append(listener)

    @property
    def stats(self) -> Stats:
        return self._sequencer.stats

    def last_seqs(self) -> dict[str, int]:
        return self._sequencer.last()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background; returns at once."""
        if self._started:
            raise RuntimeError("a client starts once; make a new one")
        self._started = True
        self._set_state(State.CONNECTING, "start")
        self._run_task = asyncio.get_running_loop().create_task(self._run())

    async def connect(self, timeout: float | None = 30.0) -> None:
        """``start()`` and wait until the client is open (raises ``ClientClosed`` if it gave
        up, ``TimeoutError`` after ``timeout``; it keeps trying in the background then)."""
        if not self._started:
            self.start()
        await self.wait_for(State.OPEN, timeout)

    async def wait_for(self, state: State, timeout: float | None = None) -> None:
        """Wait until the client is in ``state`` (``ClientClosed`` if it closes first)."""
        if self.state is state:
            return
        if self.state is State.CLOSED:
            raise ClientClosed(f"closed while waiting for {state.value}")
        reached: asyncio.Future[State] = asyncio.get_running_loop().create_future()

        def listener(change: StateChange) -> None:
            if not reached.done() and change.current in (state, State.CLOSED):
                reached.set_result(change.current)

        self._state_listeners.append(listener)
        try:
            if await asyncio.wait_for(reached, timeout) is not state:
                raise ClientClosed(f"closed while waiting for {state.value}")
        finally:
            self._state_listeners.remove(listener)

    async def close(self) -> None:
        """Close for good: pending sends raise ``ClientClosed``."""
        self._closing = True
        if self._run_task is not None:
            self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        self._fail_all(ClientClosed())
        self._set_state(State.CLOSED, "closed by the app")

    # --- requests ------------------------------------------------------------------------

    async def send_message(self, user_id: str, text: str) -> Frame:
        """The ack: ``stored`` true and the ``id``, online recipient or not (no ``seq``)."""
        return await self._send(
            {"action": "sendMessage", "targetUserId": user_id, "text": text}, message=True
        )

    async def send_room(self, room: str, text: str) -> Frame:
        return await self._send({"action": "sendRoom", "room": room, "text": text}, message=True)

    async def broadcast(self, text: str) -> Frame:
        return await self._send({"action": "broadcastAll", "text": text}, message=True)

    async def join(self, room: str) -> Frame:
        """Join ``room``; it is remembered and rejoined after every reconnect."""
        self.rooms.add(room)
        try:
            return await self._send({"action": "join", "room": room})
        except SwitchboardError as exc:
            if exc.code != "timeout":
                self.rooms.discard(room)
            raise

    async def leave(self, room: str) -> Frame:
        self.rooms.discard(room)
        return await self._send({"action": "leave", "room": room})

    async def members(self, room: str) -> Frame:
        """Who is in ``room``: the ``members`` frame (``count``, ``users`` as ``{"userId",
        "connections"}``, ``truncated``); ``SwitchboardError("forbidden")`` unless this
        connection is a member of the room."""
        return await self._send({"action": "members", "room": room})

    async def _send(self, frame: Frame, message: bool = False) -> Frame:
        if self._closing or not self._started:
            raise ClientClosed("connect first" if not self._started else "the client is closed")
        if message:
            # The server keeps one message per clientMsgId; a re-send after a reconnect reuses it.
            frame = {**frame, "clientMsgId": uuid.uuid4().hex}
        if not self._ready:
            waiting = sum(1 for r in self._requests.values() if not r.internal)
            if waiting >= self._max_queue:
                raise QueueFull(self._max_queue)
        ref, request = self._new_request(frame, internal=False)
        if self._ready and self._transport is not None:
            await self._transmit(self._transport, request)
        return await self._answer(ref, request)

    def _new_request(self, frame: Frame, internal: bool) -> tuple[int, _Request]:
        ref = next(self._refs)
        future: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        request = _Request({**frame, "ref": ref}, future, internal)
        self._requests[ref] = request
        return ref, request

    async def _transmit(self, transport: Transport, request: _Request) -> None:
        if request.session not in (0, self._session):
            request.resent = True
        request.session = self._session
        with contextlib.suppress(ConnectionLost):  # the reader notices and reconnects
            await transport.send(json.dumps(request.frame))

    async def _answer(self, ref: int, request: _Request) -> Frame:
        try:
            reply = await asyncio.wait_for(asyncio.shield(request.future), self._request_timeout)
        except TimeoutError:
            raise RequestTimeout(
                f"no answer to {request.frame.get('action')} in {self._request_timeout} s"
            ) from None
        finally:
            self._requests.pop(ref, None)
        if reply.get("type") == "error":
            raise SwitchboardError(
                str(reply.get("code", "internal")), str(reply.get("message", "")), reply
            )
        return reply

    async def _call(self, transport: Transport, frame: Frame) -> Frame:
        """One of the client's own requests on this connection (never queued)."""
        ref, request = self._new_request(frame, internal=True)
        await self._transmit(transport, request)
        return await self._answer(ref, request)

    def _fail_all(self, error: Exception, internal_only: bool = False) -> None:
        for request in list(self._requests.values()):
            if (request.internal or not internal_only) and not request.future.done():
                request.future.set_exception(error)
                request.future.exception()  # retrieved: no "never retrieved" warning

    # --- the state machine ---------------------------------------------------------------

    def _set_state(
        self, state: State, reason: str, retry_in: float | None = None, attempt: int = 0
    ) -> None:
        previous, self.state = self.state, state
        change = StateChange(previous, state, reason, retry_in, attempt)
        for listener in list(self._state_listeners):
            try:
                listener(change)
            except Exception:
                log.exception("a state listener raised")

    async def _run(self) -> None:
        attempt = 0
        reason = ""
        while not self._closing:
            try:
                transport = await asyncio.wait_for(self._connector(self._url), self._open_timeout)
            except (OSError, TimeoutError, ConnectionLost) as exc:
                reason = f"connect failed: {exc!r}"
            except WebSocketException as exc:  # InvalidStatus, InvalidHandshake, ...
                if _refused(exc):
                    self._closing = True
                    self._fail_all(ClientClosed(f"handshake refused: {exc}"))
                    self._set_state(State.CLOSED, f"handshake refused: {exc}")
                    return
                reason = f"connect failed: {exc!r}"
            else:
                opened, reason = await self._run_session(transport)
                if opened:
                    attempt = 0
                if self._planned.is_set():
                    self._planned.clear()
                    self.reconnects += 1
                    self._set_state(State.RECONNECTING, reason, 0.0, 0)
                    continue
            if self._closing:
                return
            if self._max_attempts is not None and attempt >= self._max_attempts:
                self._closing = True
                self._fail_all(ClientClosed(f"gave up after {attempt} attempts: {reason}"))
                self._set_state(State.CLOSED, f"gave up after {attempt} attempts: {reason}")
                return
            delay = self._backoff.delay(attempt)
            attempt += 1
            self.reconnects += 1
            self._set_state(State.RECONNECTING, reason, delay, attempt)
            await asyncio.sleep(delay)

    async def _run_session(self, transport: Transport) -> tuple[bool, str]:
        """One connection, from handshake to loss; (whether it got open, why it ended)."""
        self._session += 1
        self._transport = transport
        reader = asyncio.get_running_loop().create_task(self._read(transport))
        timers: list[asyncio.Task[None]] = []
        opened = False
        reason = "connection lost"
        try:
            await self._handshake(transport)
            await self._flush(transport)
            self._ready = True
            opened = True
            self._set_state(State.OPEN, "resumed")
            timers.append(asyncio.get_running_loop().create_task(self._keepalive(transport)))
            timers.append(asyncio.get_running_loop().create_task(self._age_timer(transport)))
            for stream in self._sequencer.waiting():
                self._watch_gap(stream)
            await reader
            if self._planned.is_set():
                reason = "planned reconnect before the connection's maximum age"
        except (SwitchboardError, ConnectionLost) as exc:
            reason = f"handshake failed: {exc}"
        finally:
            self._ready = False
            self._transport = None
            for task in [*timers, *self._gap_tasks.values(), reader]:
                task.cancel()
            self._gap_tasks.clear()
            with contextlib.suppress(Exception):
                await transport.close()
            self._fail_all(ConnectionLost(reason), internal_only=True)
        return opened, reason

    async def _handshake(self, transport: Transport) -> None:
        identity = await self._call(transport, {"action": "whoami"})
        self.connection_id = str(identity.get("connectionId") or "") or None
        self.user_id = str(identity.get("userId") or "") or self.user_id
        for room in sorted(self.rooms):
            await self._call(transport, {"action": "join", "room": room})
        streams = {s: seq for s, seq in self._sequencer.last().items() if self._may_read(s)}
        names = list(streams)
        for i in range(0, len(names), MAX_RESUME_STREAMS):
            chunk = {name: streams[name] for name in names[i : i + MAX_RESUME_STREAMS]}
            answer = await self._call(transport, {"action": "resume", "streams": chunk})
            summaries = answer.get("streams")
            for stream, summary in (summaries if isinstance(summaries, dict) else {}).items():
                if isinstance(summary, dict):
                    await self._after_resume(transport, str(stream), summary)

    def _may_read(self, stream: str) -> bool:
        """What the server lets a resume read: rooms we are in, our own user stream, all."""
        scope, _, name = stream.partition(":")
        if scope == "room":
            return name in self.rooms
        if scope == "user":
            return name == self.user_id
        return stream == "all"

    async def _after_resume(self, transport: Transport, stream: str, summary: Frame) -> None:
        if "refused" in summary:
            log.warning("resume of %s refused: %s", stream, summary["refused"])
            return
        self._page_fields(stream, summary)
        nxt = summary.get("next")
        if summary.get("truncated") and isinstance(nxt, int):
            await self._page_history(transport, stream, nxt - 1, from_gap=False)

    def _page_fields(self, stream: str, page: Frame) -> None:
        """``skipped`` seqs are not waited for; ``truncated`` with ``oldest`` and no ``next``:
        what is before ``oldest`` is past retention."""
        skipped = page.get("skipped")
        if isinstance(skipped, list):
            self._deliver(self._sequencer.skip(stream, [s for s in skipped if isinstance(s, int)]))
        oldest = page.get("oldest")
        if page.get("truncated") and isinstance(oldest, int):
            self._deliver(self._sequencer.advance(stream, oldest - 1))

    async def _page_history(
        self, transport: Transport, stream: str, after: int, from_gap: bool
    ) -> None:
        """Read pages after ``after`` until the stream's end or a seq still being written."""
        for _ in range(10_000):
            page = await self._call(
                transport,
                {"action": "history", "stream": stream, "after": after, "limit": HISTORY_PAGE},
            )
            self._page_fields(stream, page)
            for raw in page.get("messages") or []:  # messages and presence events
                entry = entry_from_frame(raw) if isinstance(raw, dict) else None
                if entry is not None:
                    self._deliver(self._sequencer.offer(entry, from_history=from_gap))
            nxt = page.get("next")
            if not isinstance(nxt, int) or nxt - 1 <= after:
                return  # the end, or a young hole (a write in flight): asked again later
            after = nxt - 1

    async def _flush(self, transport: Transport) -> None:
        """Send what was queued (and re-send what was unanswered), oldest first."""
        while True:
            waiting = [
                r
                for _, r in sorted(self._requests.items())
                if not r.internal and r.session != self._session and not r.future.done()
            ]
            if not waiting:
                return
            for request in waiting:
                await self._transmit(transport, request)

    async def _keepalive(self, transport: Transport) -> None:
        """A ``ping`` frame under the idle timeout; no pong in time means a dead socket."""
        if self._ping_interval is None:
            return
        while True:
            await asyncio.sleep(self._ping_interval)
            try:
                await self._call(transport, {"action": "ping"})
            except (SwitchboardError, ConnectionLost):
                await transport.close()
                return

    async def _age_timer(self, transport: Transport) -> None:
        """Reconnect before API Gateway's 2-hour limit: stop sending, let the answers to what
        is in flight arrive (bounded by the request timeout), then close and reconnect."""
        if self._max_connection_age is None:
            return
        await asyncio.sleep(self._max_connection_age)
        self._ready = False
        deadline = time.monotonic() + self._request_timeout
        while time.monotonic() < deadline and any(
            not r.internal and r.session == self._session and not r.future.done()
            for r in self._requests.values()
        ):
            await asyncio.sleep(0.02)
        self._planned.set()
        await transport.close()

    # --- receiving -----------------------------------------------------------------------

    async def _read(self, transport: Transport) -> None:
        while True:
            try:
                raw = await transport.recv()
            except ConnectionLost:
                self._fail_all(ConnectionLost("connection lost"), internal_only=True)
                return
            self._on_frame(raw)

    def _on_frame(self, raw: str) -> None:
        try:
            frame = json.loads(raw)
        except ValueError:
            log.warning("not JSON from the server: %.80r", raw)
            return
        if not isinstance(frame, dict):
            return
        if frame.get("type") in ("message", "presence"):
            entry = entry_from_frame(frame)
            if entry is None:
                log.warning("a stream entry without stream/seq: %.80r", raw)
                return
            self._deliver(self._sequencer.offer(entry))
            if self._ready and entry.stream in self._sequencer.waiting():
                self._watch_gap(entry.stream)
            return
        ref = frame.get("ref")
        request = self._requests.get(ref) if isinstance(ref, int) else None
        if request is not None and not request.future.done():
            if (
                request.resent
                and frame.get("type") == "error"
                and frame.get("code") == "rate_limited"
            ):
                self._retry_later(request, frame)
                return
            request.future.set_result(frame)
        else:
            # e.g. API Gateway's {"message": "Internal server error"}: its request times out.
            log.warning("a frame nobody waits for: %.120r", raw)

    def _retry_later(self, request: _Request, frame: Frame) -> None:
        """Ask again, with the same frame (ref and clientMsgId), after the server's wait; if the
        session ends first, the next one's flush re-sends it (its session is then stale)."""
        self.retried += 1
        wait_ms = _retry_after_ms(frame)
        delay = IN_PROGRESS_RETRY if wait_ms is None else wait_ms / 1000
        session = self._session

        def again() -> None:
            transport = self._transport
            if request.future.done() or session != self._session or transport is None:
                return
            asyncio.get_running_loop().create_task(self._transmit(transport, request))

        asyncio.get_running_loop().call_later(delay, again)

    def _deliver(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._store.save(entry.stream, entry.seq)
            if isinstance(entry, Presence):
                self._notify(self._presence_listeners, entry, "presence")
            else:
                self._notify(self._message_listeners, entry, "message")
        for stream in {e.stream for e in entries}:
            if stream not in self._sequencer.waiting():
                task = self._gap_tasks.pop(stream, None)
                if task is not None and task is not asyncio.current_task():
                    task.cancel()

    @staticmethod
    def _notify(listeners: list[Callable[[Any], None]], entry: Entry, kind: str) -> None:
        for listener in list(listeners):
            try:
                listener(entry)
            except Exception:
                log.exception("a %s listener raised", kind)

    def _watch_gap(self, stream: str) -> None:
        """Hold a gap for ``gap_hold`` seconds (an overtaken message usually arrives), then
        fetch it with ``history``; again while something is still missing."""
        if stream in self._gap_tasks or self._transport is None:
            return
        transport = self._transport

        async def fill() -> None:
            try:
                while stream in self._sequencer.waiting():
                    await asyncio.sleep(self._gap_hold)
                    after = self._sequencer.waiting().get(stream)
                    if after is not None:
                        await self._page_history(transport, stream, after, from_gap=True)
            except (SwitchboardError, ConnectionLost) as exc:
                log.info("gap fill of %s stopped: %s (resume fills it)", stream, exc)
            finally:
                if self._gap_tasks.get(stream) is asyncio.current_task():
                    del self._gap_tasks[stream]

        self._gap_tasks[stream] = asyncio.get_running_loop().create_task(fill())


def _retry_after_ms(frame: Mapping[str, Any]) -> int | None:
    """A ``rate_limited`` frame's ``retryAfterMs`` (ms to wait), when it has a usable one."""
    wait = frame.get("retryAfterMs")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
        return None
    return int(wait)


def _refused(exc: WebSocketException) -> bool:
    """A handshake answered 401 or 403: a bad token, which no retry mends."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None) in (401, 403)
