"""The connection state machine: connect, keep alive, reconnect, resume, send with acks.

Modelled on Ably's connection states and socket.io-client's reconnection manager: explicit
states (``connecting``, ``open``, ``reconnecting``, ``failed``: refused for good or out of
attempts, ``closed``: by the app), one timer per state (the backoff delay while reconnecting;
the keepalive, planned-reconnect and token-refresh timers while open),
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

The app's edge (the same design as the JavaScript client's): its own sends never come back as
incoming (each ack's ``(stream, seq)`` is marked seen; ``echo`` presents them once instead), a
join resumes the room at once from the stored cursor, a stream whose log was recreated restarts
its cursor (``on_reset``), a token callback is asked before every connect and before the token
expires (``authorize`` over the live connection), and a send refused ``token_expired`` is
retried once after the refresh.

API Gateway facts behind the timers: a connection is closed after 10 minutes without a frame
from the client and after 2 hours in any case
(https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import inspect
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

from switchboard_client.errors import (
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    ErrorCode,
    QueueFull,
    RequestTimeout,
    SwitchboardError,
    refusal_is_final,
    retry_after_ms,
)
from switchboard_client.ordering import (
    Entry,
    Gap,
    Message,
    Presence,
    Reset,
    Sequencer,
    Stats,
    entry_from_frame,
)
from switchboard_client.rooms import Room, User
from switchboard_client.store import MemoryStore, SeqStore

__all__ = [
    "ClientClosed",
    "ConnectError",
    "ConnectTimeout",
    "QueueFull",
    "RequestTimeout",
    "SwitchboardError",
]

log = logging.getLogger("switchboard_client")

# API Gateway's limits, and our margins under them.
IDLE_TIMEOUT = 600.0
MAX_CONNECTION_SECONDS = 7200.0
DEFAULT_PING_INTERVAL = 300.0  # well under the 10-minute idle timeout
DEFAULT_MAX_CONNECTION_AGE = MAX_CONNECTION_SECONDS - 300.0  # reconnect 5 minutes early
MAX_RESUME_STREAMS = 100  # the server's limit per resume frame
HISTORY_PAGE = 100  # the server's largest history page
IN_PROGRESS_RETRY = 0.25  # seconds before asking again about a send still in progress
# The server accepts seqs up to 2**53 (protocol.MAX_SEQ); resuming from it replays nothing and
# answers the stream's ``last``: how a new stream learns where "now" is.
NOW_SEQ = 2**53
TOKEN_REFRESH_MARGIN = 60.0  # refresh a token this long before it expires (or halfway)

TokenSource = str | Callable[[], str | Awaitable[str]]

Frame = dict[str, Any]


class State(enum.StrEnum):
    CONNECTING = "connecting"  # the first connection attempt (until resumed)
    OPEN = "open"  # resumed; sends go out at once
    RECONNECTING = "reconnecting"  # lost: waiting out the backoff, or connecting again
    FAILED = "failed"  # refused for good, or max_attempts used up: final (connect() again)
    CLOSED = "closed"  # close() was called: final


@dataclass(frozen=True)
class StateChange:
    previous: State
    current: State
    reason: str = ""
    retry_in: float | None = None  # RECONNECTING: seconds until the next attempt
    attempt: int = 0


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

    # The cap bounds how long a client waits after the network returns (full jitter: half of it
    # on average once attempts pile up); 5 s, as socket.io's reconnectionDelayMax and the
    # JavaScript client's maxDelayMs.
    def __init__(self, base: float = 0.5, cap: float = 5.0, rng: random.Random | None = None):
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
    claimed: bool = False  # its message was recognised on the way in before the ack


class SwitchboardClient:
    """A switchboard connection that survives reconnects (the JavaScript client's
    ``SwitchboardClient``; ``Client`` is the same class). Use it as::

        client = SwitchboardClient(url, user_id="u_1")   # or token="<JWT>" / token=callback
        client.on_message(lambda m: print(m.stream, m.seq, m.text))
        await client.connect()
        await client.join("lobby")
        ack = await client.send_room("lobby", "hi")  # {"type": "ack", "stream": ..., "seq": ...}
        await client.close()

    Every message reaches ``on_message`` callbacks once per ``(stream, seq)``, in seq order per
    stream; the client's own sends never come back as incoming (with ``echo=True`` each is
    presented once, in order, when its ack arrives). Sends resolve with the ack frame or raise
    ``SwitchboardError`` (the error frame's ``code``), ``RequestTimeout`` after
    ``request_timeout`` seconds, ``QueueFull`` or ``ClientClosed``.
    """

    def __init__(
        self,
        url: str,
        *,
        token: TokenSource | None = None,
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
        echo: bool = False,
        start_from: str = "latest",
        token_refresh_margin: float = TOKEN_REFRESH_MARGIN,
        ordered_sends: bool = False,
        name: str | None = None,
    ) -> None:
        if token is not None and user_id is not None:
            raise ValueError("give a token or a user id, not both")
        if start_from not in ("latest", "earliest"):
            raise ValueError("start_from is 'latest' or 'earliest'")
        self._base_url = url
        self._token = token
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
        self._echo = echo
        self._start_from = start_from
        self._token_refresh_margin = token_refresh_margin
        # Per-publisher order: a send to a stream goes out only after the previous send to it
        # is answered (API Gateway runs a connection's frames as concurrent invocations, so
        # back-to-back sends can be logged out of order); a round trip per send to one stream.
        self._ordered_sends = ordered_sends
        self._send_locks: dict[str, asyncio.Lock] = {}

        self.state = State.CLOSED
        self.connection_id: str | None = None
        self.user_id: str | None = user_id
        self._given_user = user_id
        self._name = name  # AUTH_MODE=none: a display name for presence and members (`info`)
        self.rooms: set[str] = set()  # remembered: rejoined after every reconnect
        self.reconnects = 0
        self.token_refreshes = 0
        self.failure: ConnectError | None = None  # why the client is FAILED
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
        self._wake = asyncio.Event()
        self._refreshing: asyncio.Future[Frame] | None = None
        self._token_expires_at: float | None = None  # epoch seconds
        self._state_listeners: list[Callable[[StateChange], None]] = []
        self._message_listeners: list[Callable[[Message], None]] = []
        self._presence_listeners: list[Callable[[Presence], None]] = []
        self._gap_listeners: list[Callable[[Gap], None]] = []
        self._reset_listeners: list[Callable[[Reset], None]] = []
        self._removed_listeners: list[Callable[[Frame], None]] = []
        self._error_listeners: list[Callable[[SwitchboardError], None]] = []
        self.retried = 0  # re-sent sends answered rate_limited (or token_expired) and asked again
        self._room_objects: dict[str, Room] = {}
        self._user_objects: dict[str, User] = {}

    # --- room and user objects -----------------------------------------------------------

    def room(self, name: str) -> Room:
        """The room object for ``name`` (the same one each time); the room's events go to it."""
        if name not in self._room_objects:
            self._room_objects[name] = Room(self, name)
        return self._room_objects[name]

    def user(self, user_id: str) -> User:
        """The direct-message object for ``user_id``."""
        if user_id not in self._user_objects:
            self._user_objects[user_id] = User(self, user_id)
        return self._user_objects[user_id]

    def _to_objects(self, stream: str, value: object) -> None:
        """Hand a room's event to its room object, a direct message to its sender's object."""
        room = self._room_objects.get(stream[5:]) if stream.startswith("room:") else None
        try:
            if room is not None:
                room._event_in(value)
            if (
                isinstance(value, Message)
                and stream == f"user:{self.user_id}"
                and value.sender in self._user_objects
            ):
                self._user_objects[value.sender]._message_in(value)
        except Exception:
            log.exception("a room or user listener raised")

    # --- events --------------------------------------------------------------------------

    def on_message(self, listener: Callable[[Message], None]) -> None:
        self._message_listeners.append(listener)

    def on_presence(self, listener: Callable[[Presence], None]) -> None:
        """Rooms' enter/leave events, once per (stream, seq), in order with the messages."""
        self._presence_listeners.append(listener)

    def on_state(self, listener: Callable[[StateChange], None]) -> None:
        self._state_listeners.append(listener)

    def on_gap(self, listener: Callable[[Gap], None]) -> None:
        """Seqs past retention: they will never arrive (the JavaScript client's ``gap``)."""
        self._gap_listeners.append(listener)

    def on_reset(self, listener: Callable[[Reset], None]) -> None:
        """A stream's log was recreated (a new epoch): its cursor restarted, nothing dropped."""
        self._reset_listeners.append(listener)

    def on_removed(self, listener: Callable[[Frame], None]) -> None:
        """The server took this connection out of a room (``removed`` frame: ``room``,
        ``reason``); the room is not rejoined."""
        self._removed_listeners.append(listener)

    def on_error(self, listener: Callable[[SwitchboardError], None]) -> None:
        """What the app should know that rejected no request (a refused rejoin, a failed token
        refresh, the refusal that made the client ``failed``)."""
        self._error_listeners.append(listener)

    @property
    def stats(self) -> Stats:
        return self._sequencer.stats

    def last_seqs(self) -> dict[str, int]:
        return self._sequencer.last()

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting (and reconnecting) in the background; returns at once."""
        if self._started and self.state is not State.FAILED:
            raise RuntimeError("a client starts once; make a new one")
        self._started = True
        self._closing = False
        self.failure = None
        self._set_state(State.CONNECTING, "start")
        self._run_task = asyncio.get_running_loop().create_task(self._run())

    async def connect(self, timeout: float | None = 30.0) -> None:
        """``start()`` and wait until the client is open. Raises ``ConnectError`` when the
        client is ``failed`` (a refused handshake, with ``status`` and ``server_message``, or
        ``max_attempts`` used up), ``ClientClosed`` if closed meanwhile, ``ConnectTimeout`` (a
        ``TimeoutError``) after ``timeout``: it keeps trying in the background then."""
        if not self._started or self.state is State.FAILED:
            self.start()
        try:
            await self.wait_for(State.OPEN, timeout)
        except TimeoutError:
            raise ConnectTimeout(f"not open after {timeout} s (state {self.state})") from None

    async def wait_for(self, state: State, timeout: float | None = None) -> None:
        """Wait until the client is in ``state`` (``ClientClosed``/``ConnectError`` if it
        closes or fails first)."""
        if self.state is state:
            return
        self._raise_if_final(state)
        reached: asyncio.Future[State] = asyncio.get_running_loop().create_future()

        def listener(change: StateChange) -> None:
            if not reached.done() and change.current in (state, State.CLOSED, State.FAILED):
                reached.set_result(change.current)

        self._state_listeners.append(listener)
        try:
            if await asyncio.wait_for(reached, timeout) is not state:
                self._raise_if_final(state)
        finally:
            self._state_listeners.remove(listener)

    def _raise_if_final(self, waited: State) -> None:
        if self.state is State.FAILED and self.failure is not None:
            raise self.failure
        if self.state in (State.CLOSED, State.FAILED):
            raise ClientClosed(f"closed while waiting for {waited.value}")

    async def close(self) -> None:
        """Close for good: pending sends raise ``ClientClosed``."""
        self._closing = True
        if self._run_task is not None:
            self._run_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task
        self._fail_all(ClientClosed())
        self._set_state(State.CLOSED, "closed by the app")

    def reconnect_now(self) -> None:
        """While reconnecting, dial now instead of waiting out the backoff (for an app's
        network-change callback)."""
        self._wake.set()

    # --- requests ------------------------------------------------------------------------

    async def send_message(
        self, user_id: str, text: str | None = None, *, event: str | None = None,
        data: Any = None, ephemeral: bool = False,
    ) -> Frame:  # fmt: skip
        """The ack: ``stored`` true and the ``id``, online recipient or not (no ``seq``;
        delivery counts only where the server has delivery receipts on)."""
        frame: Frame = {"action": "sendMessage", "targetUserId": user_id}
        return await self._send_content(frame, text, event, data, ephemeral)

    async def send_room(
        self, room: str, text: str | None = None, *, event: str | None = None,
        data: Any = None, ephemeral: bool = False,
    ) -> Frame:  # fmt: skip
        frame: Frame = {"action": "sendRoom", "room": room}
        return await self._send_content(frame, text, event, data, ephemeral)

    async def publish(
        self, room: str, event: str, data: Any = None, *, text: str | None = None,
        ephemeral: bool = False,
    ) -> Frame:  # fmt: skip
        """A structured send to ``room``: ``event`` (a name) and ``data`` (any JSON value)."""
        return await self.send_room(room, text, event=event, data=data, ephemeral=ephemeral)

    async def broadcast(
        self, text: str | None = None, *, event: str | None = None, data: Any = None,
        ephemeral: bool = False,
    ) -> Frame:  # fmt: skip
        frame: Frame = {"action": "broadcastAll"}
        return await self._send_content(frame, text, event, data, ephemeral)

    async def _send_content(
        self, frame: Frame, text: str | None, event: str | None, data: Any, ephemeral: bool
    ) -> Frame:
        if text is not None:
            frame["text"] = text
        if event is not None:
            frame["event"] = event
        if data is not None:
            frame["data"] = data
        if ephemeral:
            frame["ephemeral"] = True  # nothing to deduplicate against: no clientMsgId
        stream = _send_stream(frame)
        if not self._ordered_sends or stream is None:
            return await self._send(frame, message=not ephemeral)
        lock = self._send_locks.setdefault(stream, asyncio.Lock())
        async with lock:
            return await self._send(frame, message=True)

    async def join(self, room: str) -> Frame:
        """Join ``room``; it is remembered and rejoined after every reconnect. Its stream is
        resumed at once: from the stored cursor (a restarted app gets what it missed now), or
        from "now" for a new room, so a later drop resumes it too."""
        self.rooms.add(room)
        try:
            ack = await self._send({"action": "join", "room": room})
        except SwitchboardError as exc:
            if exc.code != ErrorCode.TIMEOUT:
                self.rooms.discard(room)
            raise
        transport = self._transport
        if self._ready and transport is not None:
            try:
                await self._resume_streams(transport, [f"room:{room}"])
            except (SwitchboardError, ConnectionLost) as exc:
                # Lost with the connection: the reconnect's resume covers the room.
                log.info("resuming room:%s after the join: %s", room, exc)
        return ack

    async def leave(self, room: str) -> Frame:
        self.rooms.discard(room)
        return await self._send({"action": "leave", "room": room})

    async def whoami(self) -> Frame:
        """The ``identity`` frame: ``connectionId``, ``userId``, ``rooms``."""
        return await self._send({"action": "whoami"})

    async def members(self, room: str) -> Frame:
        """Who is in ``room``: the ``members`` frame (``count``, ``users`` as ``{"userId",
        "connections"}``, ``truncated``); ``SwitchboardError("forbidden")`` unless this
        connection is a member of the room."""
        return await self._send({"action": "members", "room": room})

    async def history(
        self, stream: str, after: int | None = 0, limit: int = HISTORY_PAGE, *,
        before: int | None = None, latest: bool = False,
    ) -> Frame:  # fmt: skip
        """One page of a stream's log (the ``history`` frame): forward from ``after``, the
        newest ``limit`` (``latest=True``) or backwards from ``before``."""
        frame: Frame = {"action": "history", "stream": stream, "limit": limit}
        if latest:
            frame["latest"] = True
        elif before is not None:
            frame["before"] = before
        elif after is not None:
            frame["after"] = after
        return await self._send(frame)

    async def refresh_token(self) -> Frame:
        """Ask the token callback for a fresh token and send it over the live connection
        (``authorize``); returns the ``authorized`` frame. Concurrent calls share one."""
        if not callable(self._token):
            raise SwitchboardError(ErrorCode.BAD_TOKEN, "no token callback to refresh with")
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._refresh())
        return await asyncio.shield(self._refreshing)

    async def _refresh(self) -> Frame:
        transport = self._transport
        if transport is None:
            raise ConnectionLost("not connected")
        token = await self._fresh_token()
        answer = await self._call(transport, {"action": "authorize", "token": token})
        self.token_refreshes += 1
        expires = answer.get("expiresAt")
        if isinstance(expires, int | float) and not isinstance(expires, bool):
            self._token_expires_at = expires / 1000
        else:
            self._token_expires_at = jwt_expiry(token)
        return answer

    async def _fresh_token(self) -> str:
        source = self._token
        if source is None or isinstance(source, str):
            return source or ""
        value = source()
        return await value if inspect.isawaitable(value) else value

    async def _send(self, frame: Frame, message: bool = False) -> Frame:
        if self._closing or not self._started or self.state is State.FAILED:
            raise ClientClosed("connect first" if not self._started else "the client is closed")
        if message:
            # The server keeps one message per clientMsgId; a re-send after a reconnect reuses it.
            frame = {**frame, "clientMsgId": uuid.uuid4().hex}
        try:
            reply, claimed = await self._request(frame)
        except SwitchboardError as exc:
            if exc.code == ErrorCode.NOT_FOUND and frame.get("action") == "sendMessage":
                if isinstance(exc.frame.get("seq"), int):
                    # An offline recipient is not an error: stored for their resume (the
                    # server's newer answer is an ack with "stored": true).
                    stored = {"type": "ack", "stored": True, "delivered": 0, "failed": 0,
                              "gone": 0}  # fmt: skip
                    keep = ("ref", "id", "stream", "seq", "epoch")
                    return {**stored, **{k: exc.frame[k] for k in keep if k in exc.frame}}
            if exc.code != ErrorCode.TOKEN_EXPIRED or not callable(self._token):
                raise
            # Refresh (over this connection, or with the reconnect the server's close forces:
            # that asks the callback again) and send it once more, with the same clientMsgId.
            self.retried += 1
            with contextlib.suppress(SwitchboardError, ConnectionLost):
                await self.refresh_token()
            reply, claimed = await self._request(frame)
        if message and not claimed:
            self._acked(frame, reply)
        return reply

    async def _request(self, frame: Frame) -> tuple[Frame, bool]:
        """An app request (queued while not open): its answer, and whether its message was
        recognised on the way in before the answer came (see ``_claim``)."""
        if not self._ready:
            waiting = sum(1 for r in self._requests.values() if not r.internal)
            if waiting >= self._max_queue:
                raise QueueFull(self._max_queue)
        ref, request = self._new_request(frame, internal=False)
        if self._ready and self._transport is not None:
            await self._transmit(self._transport, request)
        return await self._answer(ref, request), request.claimed

    def _acked(self, frame: Frame, ack: Frame) -> None:
        """A send's ack: its ``(stream, seq)`` is the client's own message, never presented as
        incoming (with ``echo``, presented once, in stream order, now)."""
        stream, seq = _send_stream(frame), ack.get("seq")
        if stream is None or ack.get("stream") != stream or not isinstance(seq, int):
            return
        self._own(frame, stream, seq, ack)

    def _own(self, frame: Frame, stream: str, seq: int, ack: Mapping[str, Any]) -> None:
        self._note_epoch(stream, ack.get("epoch"))
        entry: Message | None = None
        if self._echo:
            action = frame.get("action")
            scope = {"sendRoom": "room", "sendMessage": "user"}.get(str(action), "all")
            echoed: Frame = {"type": "message", "id": ack.get("id", ""), "from": self.user_id,
                             "scope": scope, "stream": stream, "seq": seq, "echo": True,
                             "sentAt": ack.get("sentAt")}  # fmt: skip
            for key in ("room", "text", "event", "data", "epoch"):
                value = frame.get(key, ack.get(key) if key == "epoch" else None)
                if value is not None:
                    echoed[key] = value
            entry = Message.from_frame(echoed)
        self._deliver(self._sequencer.own(stream, seq, entry))

    def _claim(self, message: Message) -> _Request | None:
        """A stream entry that is the client's own send still waiting for its ack (replayed
        or fetched before the ack came): the unanswered send to that stream with the same
        content."""
        if self.user_id is None or message.sender != self.user_id:
            return None
        for request in self._requests.values():
            f = request.frame
            if request.internal or request.claimed or request.future.done():
                continue
            if _send_stream(f) != message.stream:
                continue
            if (f.get("text") or None, f.get("event", "message"), f.get("data")) == (
                message.raw.get("text") or None,
                message.event,
                message.data,
            ):
                return request
        return None

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

    async def _url(self) -> str:
        """The URL of the next dial: a token callback is asked before every connect, so a
        reconnect never reuses an expired token."""
        query: dict[str, str] = {}
        if self._token is not None:
            token = await self._fresh_token()
            self._token_expires_at = jwt_expiry(token)
            query = {"token": token}
        elif self._given_user is not None:
            query = {"userId": self._given_user}
            if self._name is not None:
                query["name"] = self._name
        url = self._base_url
        return url + (("&" if "?" in url else "?") + urlencode(query) if query else "")

    def _fail(self, error: ConnectError) -> None:
        self._closing = True
        self.failure = error
        self._fail_all(error)
        self._set_state(State.FAILED, str(error))
        self._report(error)

    async def _run(self) -> None:
        attempt = 0
        reason = ""
        refused_401 = False
        while not self._closing:
            try:
                url = await self._url()
                transport = await asyncio.wait_for(self._connector(url), self._open_timeout)
            except (OSError, TimeoutError, ConnectionLost) as exc:
                reason = f"connect failed: {exc!r}"
            except WebSocketException as exc:  # InvalidStatus, InvalidHandshake, ...
                status, body = _refusal(exc)
                reason = f"handshake refused: HTTP {status}" if status else f"{exc!r}"
                if body:
                    reason += f" ({body})"
                fresh = status == 401 and callable(self._token) and not refused_401
                if refusal_is_final(status) and not fresh:
                    self._fail(
                        ConnectError(
                            ErrorCode.HANDSHAKE_REFUSED,
                            reason,
                            status=status,
                            server_message=body,
                            attempts=attempt + 1,
                        )
                    )
                    return
                refused_401 = status == 401
                if fresh:
                    self._set_state(State.RECONNECTING, reason, 0.0, attempt)
                    continue  # at once, with a fresh token from the callback
            except SwitchboardError as exc:  # the token callback raised one
                reason = f"token callback failed: {exc}"
            else:
                refused_401 = False
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
                self._fail(
                    ConnectError(
                        ErrorCode.GAVE_UP,
                        f"gave up after {attempt} attempts: {reason}",
                        attempts=attempt,
                    )
                )
                return
            delay = self._backoff.delay(attempt)
            attempt += 1
            self.reconnects += 1
            self._set_state(State.RECONNECTING, reason, delay, attempt)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

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
            loop = asyncio.get_running_loop()
            timers.append(loop.create_task(self._keepalive(transport)))
            timers.append(loop.create_task(self._age_timer(transport)))
            timers.append(loop.create_task(self._token_timer(transport)))
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
            try:
                await self._call(transport, {"action": "join", "room": room})
            except RequestTimeout:
                raise
            except SwitchboardError as exc:
                # Refused (the room limit, a right the token lost): tell the app, carry on.
                self.rooms.discard(room)
                self._report(SwitchboardError(exc.code, f"rejoining {room}: {exc.message}"))
        streams = [f"user:{self.user_id}", "all", *(f"room:{r}" for r in sorted(self.rooms))]
        await self._resume_streams(transport, streams)

    async def _resume_streams(self, transport: Transport, streams: list[str]) -> None:
        """``resume`` ``streams`` from their cursors (a new one from now, or from its start
        with ``start_from="earliest"``), then page ``history`` where an answer is truncated."""
        start = 0 if self._start_from == "earliest" else NOW_SEQ
        for i in range(0, len(streams), MAX_RESUME_STREAMS):
            chunk: dict[str, Any] = {}
            for stream in streams[i : i + MAX_RESUME_STREAMS]:
                cursor = self._sequencer.cursor(stream)
                epoch = self._sequencer.epoch_of(stream)
                if cursor is None:
                    chunk[stream] = start
                else:
                    chunk[stream] = cursor if epoch is None else {"epoch": epoch, "seq": cursor}
            answer = await self._call(transport, {"action": "resume", "streams": chunk})
            summaries = answer.get("streams")
            for stream, summary in (summaries if isinstance(summaries, dict) else {}).items():
                if isinstance(summary, dict):
                    await self._after_resume(transport, str(stream), summary)

    async def _after_resume(self, transport: Transport, stream: str, summary: Frame) -> None:
        if "refused" in summary:
            self._report(
                SwitchboardError(ErrorCode.RESUME_REFUSED, f"{stream}: {summary['refused']}")
            )
            return
        epoch = summary.get("epoch")
        last = summary.get("last")
        after = summary.get("after")
        after = after.get("seq") if isinstance(after, dict) else after
        # A log younger than the cursor we resumed from was recreated, even on a server without
        # epochs: the last seq it ever gave is below one we had delivered. (``after`` echoes
        # that cursor; the cursor may have moved on since, with live messages past ``last``.)
        younger = (
            isinstance(after, int) and after != NOW_SEQ and isinstance(last, int) and last < after
        )
        if summary.get("reset") is True or younger:
            # The stream's log was recreated (a new epoch): its old cursor means nothing now.
            self._on_reset(self._sequencer.reset(stream, epoch if isinstance(epoch, str) else None))
            if isinstance(last, int) and last > 0:
                await self._page_history(transport, stream, 0, from_gap=False)
            return
        self._note_epoch(stream, epoch)
        if summary.get("after") == NOW_SEQ and isinstance(summary.get("last"), int):
            self._sequencer.begin(stream, int(summary["last"]))
            self._save(stream)
        self._page_fields(stream, summary)
        nxt = summary.get("next")
        if summary.get("truncated") and isinstance(nxt, int):
            await self._page_history(transport, stream, nxt - 1, from_gap=False)

    def _note_epoch(self, stream: str, epoch: object) -> None:
        reset = self._sequencer.epoch(stream, epoch)
        if reset is not None:
            self._on_reset(reset)

    def _on_reset(self, reset: Reset) -> None:
        self._notify(self._reset_listeners, reset, "reset")
        self._to_objects(reset.stream, reset)

    def _page_fields(self, stream: str, page: Frame) -> None:
        """``skipped`` seqs are not waited for; ``truncated`` with ``oldest`` and no ``next``:
        what is before ``oldest`` is past retention (a ``gap`` event)."""
        skipped = page.get("skipped")
        if isinstance(skipped, list):
            self._deliver(self._sequencer.skip(stream, [s for s in skipped if isinstance(s, int)]))
        oldest = page.get("oldest")
        if page.get("truncated") and isinstance(oldest, int):
            self._lost(stream, oldest - 1)
        elif (
            page.get("truncated")
            and page.get("oldest") is None
            and page.get("next") is None
            and isinstance(page.get("last"), int)
        ):
            self._lost(stream, int(page["last"]))  # everything after the cursor is gone

    def _lost(self, stream: str, seq: int) -> None:
        before = self._sequencer.cursor(stream)
        self._deliver(self._sequencer.advance(stream, seq))
        first = (before if before is not None else seq) + 1
        if first <= seq:
            gap = Gap(stream, first, seq)
            self._notify(self._gap_listeners, gap, "gap")
            self._to_objects(stream, gap)

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
                if isinstance(raw, dict):
                    self._receive({"stream": stream, **raw}, from_history=from_gap)
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

    async def _token_timer(self, transport: Transport) -> None:
        """With a token callback and a token that says when it expires: refresh it over the
        live connection ``token_refresh_margin`` before then (or halfway, if short-lived)."""
        if not callable(self._token):
            return
        while self._token_expires_at is not None:
            left = self._token_expires_at - time.time()
            await asyncio.sleep(max(0.0, left - min(self._token_refresh_margin, left / 2)))
            try:
                await self.refresh_token()
            except SwitchboardError as exc:
                self._report(exc)
                # The server does not know `authorize`, or refused the token: reconnect with a
                # fresh one before the old expires rather than be closed by the server.
                self._planned.set()
                await transport.close()
                return
            except ConnectionLost:
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
        kind = frame.get("type")
        if kind in ("message", "presence"):
            self._receive(frame)
            return
        if kind == "replay":
            # A batch of one stream's missed entries, in seq order (the event-model issue).
            messages = frame.get("messages")
            for item in messages if isinstance(messages, list) else []:
                if isinstance(item, dict):
                    base = {"stream": frame.get("stream"), "epoch": frame.get("epoch")}
                    self._receive({**base, **item, "replayed": True})
            return
        if kind == "removed":
            room = frame.get("room")
            if isinstance(room, str):
                self.rooms.discard(room)
            for listener in list(self._removed_listeners):
                try:
                    listener(frame)
                except Exception:
                    log.exception("a removed listener raised")
            if isinstance(room, str):
                self._to_objects(f"room:{room}", frame)
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

    def _receive(self, frame: Frame, from_history: bool = False) -> None:
        entry = entry_from_frame(frame)
        if entry is None:
            log.warning("a stream entry without stream/seq: %.80r", frame)
            return
        if isinstance(entry, Message) and entry.ephemeral and entry.seq == 0:
            self._notify(self._message_listeners, entry, "message")  # not logged: no order
            self._to_objects(entry.stream, entry)
            return
        self._note_epoch(entry.stream, frame.get("epoch"))
        if isinstance(entry, Message):
            request = self._claim(entry)
            if request is not None:
                request.claimed = True
                own = {"id": entry.id, "sentAt": entry.sent_at, "epoch": entry.epoch}
                self._own(request.frame, entry.stream, entry.seq, own)
                return
        self._deliver(self._sequencer.offer(entry, from_history=from_history))
        if self._ready and entry.stream in self._sequencer.waiting():
            self._watch_gap(entry.stream)

    def _retry_later(self, request: _Request, frame: Frame) -> None:
        """Ask again, with the same frame (ref and clientMsgId), after the server's wait; if the
        session ends first, the next one's flush re-sends it (its session is then stale)."""
        self.retried += 1
        wait_ms = retry_after_ms(frame)
        delay = IN_PROGRESS_RETRY if wait_ms is None else wait_ms / 1000
        session = self._session

        def again() -> None:
            transport = self._transport
            if request.future.done() or session != self._session or transport is None:
                return
            asyncio.get_running_loop().create_task(self._transmit(transport, request))

        asyncio.get_running_loop().call_later(delay, again)

    def _save(self, stream: str) -> None:
        seq = self._sequencer.cursor(stream)
        if seq is None:
            return
        epoch = self._sequencer.epoch_of(stream)
        try:
            if epoch is None:
                self._store.save(stream, seq)  # a two-argument store keeps working
            else:
                self._store.save(stream, seq, epoch)
        except Exception as exc:
            log.exception("the store failed to save %s", stream)
            self._report(SwitchboardError(ErrorCode.STORE, f"saving {stream}: {exc}"))

    def _deliver(self, entries: list[Entry]) -> None:
        for entry in entries:
            self._save(entry.stream)
            if isinstance(entry, Presence):
                self._notify(self._presence_listeners, entry, "presence")
            else:
                self._notify(self._message_listeners, entry, "message")
            self._to_objects(entry.stream, entry)
        for stream in {e.stream for e in entries}:
            if stream not in self._sequencer.waiting():
                task = self._gap_tasks.pop(stream, None)
                if task is not None and task is not asyncio.current_task():
                    task.cancel()

    def _report(self, error: SwitchboardError) -> None:
        for listener in list(self._error_listeners):
            try:
                listener(error)
            except Exception:
                log.exception("an error listener raised")

    @staticmethod
    def _notify(listeners: list[Callable[[Any], None]], entry: object, kind: str) -> None:
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


# The earlier name of the same class.
Client = SwitchboardClient


def _send_stream(frame: Mapping[str, Any]) -> str | None:
    """The stream a send's message is logged in (what its ack's ``seq`` numbers)."""
    if frame.get("ephemeral"):
        return None
    action = frame.get("action")
    if action == "sendRoom":
        return f"room:{frame.get('room')}"
    if action == "broadcastAll":
        return "all"
    if action == "sendMessage":
        return f"user:{frame.get('targetUserId')}"
    return None


def jwt_expiry(token: str) -> float | None:
    """A JWT's ``exp`` (epoch seconds), read without verifying (the server verifies); None when
    the token is not a JWT or has no ``exp``."""
    parts = token.split(".")
    if len(parts) < 2:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _refusal(exc: WebSocketException) -> tuple[int | None, str | None]:
    """A refused handshake's HTTP status and the server's message (its JSON ``message``, or
    the body's text), where ``websockets`` gives them."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    body = getattr(response, "body", None)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else None
    if text:
        with contextlib.suppress(ValueError):
            parsed = json.loads(text)
            if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
                text = parsed["message"]
    return (status if isinstance(status, int) else None), (text or None)
