"""The client protocol, without I/O: raw frame in, a command or an error frame out.

Client frames are JSON objects dispatched on ``action`` (API Gateway's route selection
expression is ``$request.body.action``, but Chalice only creates ``$default``, so the message
handler dispatches itself). Server frames are JSON objects with a ``type``.
"""

from __future__ import annotations

import enum
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

# Ids and room names become parts of DynamoDB keys ("USER#<id>", "ROOM#<room>"), so "#" and
# anything outside a small charset is refused: no key injection, no look-alike unicode.
USER_ID_RE = re.compile(r"^[A-Za-z0-9_.:@|+-]{1,128}$")
ROOM_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
CONNECTION_ID_RE = re.compile(r"^[A-Za-z0-9_=+/-]{1,128}$")
# A client's idempotency key for a send (see idempotency.py): it becomes a DynamoDB sort key,
# so the same small charset without "#" (UUIDs, ULIDs and nanoids all fit).
CLIENT_MSG_ID_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
MAX_REF_CHARS = 64
# API Gateway's message limit is 128 KB; botocore's PostToConnection Data max is 131072 bytes.
MAX_PAYLOAD_BYTES = 131072
# An event name (``event`` on sends; like Ably's message ``name`` or Pusher's event name): the
# room charset plus "/", so names such as "order.updated", "cursor:move" or "chat/typing" fit.
EVENT_RE = re.compile(r"^[A-Za-z0-9_.:/-]{1,64}$")
DEFAULT_EVENT = "message"
# What a message frame adds around its text and data (id, from, scope, room, stream, seq,
# epoch, sentAt, event, and a replay or history frame's own fields around one message): the
# body (``text`` + ``data``, JSON-encoded) gets the rest of the 128 KB message limit, so every
# frame that carries it fits one post.
FRAME_ENVELOPE_BYTES = 2048
MAX_BODY_BYTES = MAX_PAYLOAD_BYTES - FRAME_ENVELOPE_BYTES
# ``data`` nests at most this deep: json.dumps recurses per level, and no event needs more.
MAX_DATA_DEPTH = 32
# A stream's epoch as clients echo it back (the server makes them: see message_log.py).
EPOCH_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")

ERROR_CODES = (
    "bad_json",
    "bad_request",
    "unknown_action",
    "forbidden",
    "not_found",
    "too_large",
    "rate_limited",
    "internal",
    # The permissions issue: an authorizer that could not answer (refused, fail closed), a
    # frame after the token's exp (refresh it with ``authorize``, or reconnect), and an
    # ``authorize`` whose token does not verify (the old one stays).
    "unavailable",
    "token_expired",
    "bad_token",
)
# Why a connection left a room it did not leave itself (a ``removed`` frame).
REMOVED_REASONS = ("revoked", "capability", "expired")
# A JWT travels in the frame: bounded well under the 32 KB frame (tokens are ~0.3-2 KB).
MAX_TOKEN_CHARS = 8192

Ref = str | int | None


class Scope(enum.StrEnum):
    """Who a message is for: one user's connections, a room's members, or everyone. A message
    frame carries it as ``scope``; ``Scope(value)`` raises ValueError for anything else."""

    USER = "user"
    ROOM = "room"
    ALL = "all"


@dataclass(frozen=True)
class Body:
    """What a send carries besides its target: an ``event`` name, ``text`` and/or ``data``
    (any JSON value; None when the send had none), and whether it is ``ephemeral`` (not
    logged: no seq, never replayed). At least one of ``text`` and ``data`` is set."""

    text: str | None = None
    event: str = DEFAULT_EVENT
    data: Any = None
    ephemeral: bool = False

    def fields(self) -> dict[str, Any]:
        """The body as a message frame carries it (``text``/``data`` only when present)."""
        out: dict[str, Any] = {"event": self.event}
        if self.text is not None:
            out["text"] = self.text
        if self.data is not None:
            out["data"] = self.data
        return out

    def digest_source(self) -> str:
        """What tells a retried send from another message under the same ``clientMsgId``
        (idempotency.py hashes it): the text alone for a plain text message, as before
        events existed, else the canonical JSON of event, text and data."""
        if self.event == DEFAULT_EVENT and self.data is None and self.text is not None:
            return self.text
        return json.dumps(self.fields(), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class SendMessage:
    target_user_id: str
    text: str | None
    ref: Ref = None
    client_msg_id: str | None = None  # a retry with the same id is sent once
    event: str = DEFAULT_EVENT
    data: Any = None
    ephemeral: bool = False

    @property
    def body(self) -> Body:
        return Body(self.text, self.event, self.data, self.ephemeral)


@dataclass(frozen=True)
class BroadcastAll:
    text: str | None
    ref: Ref = None
    client_msg_id: str | None = None  # a retry with the same id is sent once
    event: str = DEFAULT_EVENT
    data: Any = None
    ephemeral: bool = False

    @property
    def body(self) -> Body:
        return Body(self.text, self.event, self.data, self.ephemeral)


@dataclass(frozen=True)
class Join:
    room: str
    ref: Ref = None


@dataclass(frozen=True)
class Leave:
    room: str
    ref: Ref = None


@dataclass(frozen=True)
class SendRoom:
    room: str
    text: str | None
    ref: Ref = None
    client_msg_id: str | None = None  # a retry with the same id is sent once
    event: str = DEFAULT_EVENT
    data: Any = None
    ephemeral: bool = False

    @property
    def body(self) -> Body:
        return Body(self.text, self.event, self.data, self.ephemeral)


@dataclass(frozen=True)
class Ping:
    ref: Ref = None


@dataclass(frozen=True)
class WhoAmI:
    ref: Ref = None


@dataclass(frozen=True)
class Cursor:
    """Where a client is in one stream: the last ``seq`` it has, and the stream's ``epoch``
    it was numbered in (None when the client sent a bare number, or had seen no epoch)."""

    stream: str
    seq: int
    epoch: str | None = None


@dataclass(frozen=True)
class Resume:
    """Replay every logged message after each stream's cursor."""

    streams: tuple[Cursor, ...]
    ref: Ref = None


@dataclass(frozen=True)
class History:
    """One page of a stream's log: forward from ``after`` (the default), the newest ``limit``
    (``latest``), or the ``limit`` before seq ``before``; oldest first within the page."""

    stream: str
    after: int
    limit: int
    ref: Ref = None
    before: int | None = None
    latest: bool = False

    @property
    def backwards(self) -> bool:
        return self.latest or self.before is not None


@dataclass(frozen=True)
class Members:
    """Who is in a room (members of the room only), one page from ``cursor``."""

    room: str
    ref: Ref = None
    cursor: str | None = None


@dataclass(frozen=True)
class Authorize:
    """Replace the connection's token (same ``sub``) without reconnecting."""

    token: str
    ref: Ref = None


Command = (
    SendMessage
    | BroadcastAll
    | Join
    | Leave
    | SendRoom
    | Ping
    | WhoAmI
    | Resume
    | History
    | Members
    | Authorize
)

# A stream is where a message is logged: a room, a user's direct messages, or everyone.
MAX_RESUME_STREAMS = 100
MAX_SEQ = 2**53  # JSON numbers above this lose precision in JavaScript clients
HISTORY_DEFAULT_LIMIT = 50
HISTORY_MAX_LIMIT = 100


def stream_name(scope: str, name: str | None = None) -> str:
    """``room:<name>``, ``user:<userId>`` or ``all``."""
    return "all" if scope == "all" else f"{scope}:{name}"


def parse_stream(value: object) -> tuple[str, str | None] | None:
    """``(scope, name)`` of a valid stream name, else None."""
    if value == "all":
        return ("all", None)
    if not isinstance(value, str):
        return None
    scope, _, name = value.partition(":")
    if scope == "room" and valid_room(name):
        return ("room", name)
    if scope == "user" and valid_user_id(name):
        return ("user", name)
    return None


@dataclass(frozen=True)
class ProtocolError:
    """A frame that could not become a command; ``frame()`` is what the client is sent."""

    code: str
    message: str
    ref: Ref = None

    def frame(self) -> dict[str, Any]:
        return error_frame(self.code, self.message, self.ref)


class _Invalid(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def valid_user_id(value: object) -> bool:
    return isinstance(value, str) and USER_ID_RE.fullmatch(value) is not None


def valid_room(value: object) -> bool:
    return isinstance(value, str) and ROOM_RE.fullmatch(value) is not None


def valid_connection_id(value: object) -> bool:
    return isinstance(value, str) and CONNECTION_ID_RE.fullmatch(value) is not None


def encodable(value: str) -> bool:
    """False for strings UTF-8 cannot carry: JSON's ``"\\ud800"`` decodes to a lone surrogate,
    and echoing one back would fail when the reply is encoded."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_text(value: object, max_chars: int, field: str = "text") -> str:
    """Return ``value`` if it is a non-empty string within the limit, else raise ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"'{field}' must be a string")
    if not value:
        raise ValueError(f"'{field}' must not be empty")
    if len(value) > max_chars:
        raise ValueError(f"'{field}' is longer than {max_chars} characters")
    if not encodable(value):
        raise ValueError(f"'{field}' must be valid Unicode (no lone surrogates)")
    return value


def _ref(obj: dict[str, Any]) -> Ref:
    ref = obj.get("ref")
    if ref is None:
        return None
    if isinstance(ref, bool) or not isinstance(ref, (str, int)):
        raise _Invalid("bad_request", "'ref' must be a string or an integer")
    if isinstance(ref, str) and len(ref) > MAX_REF_CHARS:
        raise _Invalid("bad_request", f"'ref' is longer than {MAX_REF_CHARS} characters")
    if isinstance(ref, str) and not encodable(ref):
        raise _Invalid("bad_request", "'ref' must be valid Unicode (no lone surrogates)")
    if isinstance(ref, int) and abs(ref) > 2**53:
        raise _Invalid("bad_request", "'ref' is out of range")
    return ref


def _text(obj: dict[str, Any], max_chars: int) -> str:
    try:
        return validate_text(obj.get("text"), max_chars)
    except ValueError as exc:
        code = "too_large" if "longer" in str(exc) else "bad_request"
        raise _Invalid(code, str(exc)) from None


def valid_event(value: object) -> bool:
    return isinstance(value, str) and EVENT_RE.fullmatch(value) is not None


def validate_data(value: Any) -> Any:
    """Return ``value`` if it is a JSON value a message may carry, else raise ValueError:
    finite numbers only (Python's json reads ``NaN``/``Infinity``, which no JSON client can
    parse back), strings UTF-8 can carry, at most ``MAX_DATA_DEPTH`` levels deep. Walked
    without recursion, so a deep value cannot exhaust the stack here."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, float) and (item != item or item in (float("inf"), float("-inf"))):
            raise ValueError("'data' must not hold NaN or Infinity")
        if isinstance(item, str) and not encodable(item):
            raise ValueError("'data' must be valid Unicode (no lone surrogates)")
        if isinstance(item, (dict, list)):
            if depth > MAX_DATA_DEPTH:
                raise ValueError(f"'data' nests deeper than {MAX_DATA_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if not encodable(key):
                        raise ValueError("'data' must be valid Unicode (no lone surrogates)")
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
    return value


def body_bytes(text: str | None, data: Any) -> int:
    """How many bytes ``text`` and ``data`` take in a frame (as ``encode`` writes them)."""
    size = 0
    if text is not None:
        size += len(json.dumps(text, ensure_ascii=False).encode("utf-8"))
    if data is not None:
        size += len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    return size


def parse_body(obj: dict[str, Any], max_text_chars: int, *, ephemeral_ok: bool = True) -> Body:
    """A send's ``text``, ``event``, ``data`` and ``ephemeral``, checked (the WebSocket sends
    and the HTTP push routes share this). Raises ``ValueError`` with ``code`` ``too_large``
    or ``bad_request`` as its second argument."""
    try:
        return _body(obj, max_text_chars, ephemeral_ok)
    except _Invalid as exc:
        raise ValueError(exc.message, exc.code) from None


def _body(obj: dict[str, Any], max_text_chars: int, ephemeral_ok: bool = True) -> Body:
    raw_text = obj.get("text")
    data = obj.get("data")  # JSON null is no data, like a missing key
    if raw_text is None and data is None:
        raise _Invalid("bad_request", "a send needs 'text' (a string) or 'data' (any JSON)")
    text = None if raw_text is None else _text(obj, max_text_chars)
    if data is not None:
        try:
            validate_data(data)
        except ValueError as exc:
            raise _Invalid("bad_request", str(exc)) from None
    if body_bytes(text, data) > MAX_BODY_BYTES:
        raise _Invalid("too_large", f"'text' and 'data' together are over {MAX_BODY_BYTES} bytes")
    event = obj.get("event", DEFAULT_EVENT)
    if not valid_event(event):
        raise _Invalid("bad_request", "'event' must be 1-64 characters of A-Z a-z 0-9 _ . : / -")
    ephemeral = obj.get("ephemeral", False)
    if not isinstance(ephemeral, bool):
        raise _Invalid("bad_request", "'ephemeral' must be true or false")
    if ephemeral and not ephemeral_ok:
        raise _Invalid("bad_request", "'ephemeral' is not accepted here")
    if ephemeral and obj.get("clientMsgId") is not None:
        # Nothing is logged, so there is nothing to deduplicate a retry against.
        raise _Invalid("bad_request", "an ephemeral send takes no 'clientMsgId'")
    return Body(text, str(event), data, ephemeral)


def _room(obj: dict[str, Any]) -> str:
    room = obj.get("room")
    if not valid_room(room):
        raise _Invalid("bad_request", "'room' must be 1-64 characters of A-Z a-z 0-9 _ . : -")
    return str(room)


def _user(obj: dict[str, Any]) -> str:
    user = obj.get("targetUserId")
    if not valid_user_id(user):
        raise _Invalid(
            "bad_request", "'targetUserId' must be 1-128 characters of A-Z a-z 0-9 _ . : @ | + -"
        )
    return str(user)


def _seq(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEQ:
        raise _Invalid("bad_request", f"{field} must be an integer seq >= 0")
    return value


def valid_client_msg_id(value: object) -> bool:
    return isinstance(value, str) and CLIENT_MSG_ID_RE.fullmatch(value) is not None


def _client_msg_id(obj: dict[str, Any]) -> str | None:
    value = obj.get("clientMsgId")
    if value is None:
        return None
    if not valid_client_msg_id(value):
        raise _Invalid(
            "bad_request", "'clientMsgId' must be 1-64 characters of A-Z a-z 0-9 _ . : -"
        )
    return str(value)


def _token(obj: dict[str, Any]) -> str:
    value = obj.get("token")
    if not isinstance(value, str) or not value or len(value) > MAX_TOKEN_CHARS:
        raise _Invalid(
            "bad_request", f"'token' must be a JWT of at most {MAX_TOKEN_CHARS} characters"
        )
    return value


def _stream(value: object) -> str:
    if parse_stream(value) is None:
        raise _Invalid("bad_request", "a stream is 'room:<room>', 'user:<userId>' or 'all'")
    return str(value)


def valid_epoch(value: object) -> bool:
    return isinstance(value, str) and EPOCH_RE.fullmatch(value) is not None


def _cursor(stream: str, value: object) -> Cursor:
    """A resume position: a bare seq, or ``{"epoch": "…" | null, "seq": n}``."""
    field = f"'streams[{stream}]'"
    if not isinstance(value, dict):
        return Cursor(stream, _seq(value, field))
    if set(value) - {"epoch", "seq"}:
        raise _Invalid("bad_request", f"{field} takes only 'epoch' and 'seq'")
    epoch = value.get("epoch")
    if epoch is not None and not valid_epoch(epoch):
        raise _Invalid("bad_request", f"{field}.epoch must be a string the server sent, or null")
    return Cursor(stream, _seq(value.get("seq"), f"{field}.seq"), epoch)


def _resume(obj: dict[str, Any]) -> tuple[Cursor, ...]:
    streams = obj.get("streams")
    if not isinstance(streams, dict) or not streams:
        raise _Invalid(
            "bad_request",
            '\'streams\' must be an object of stream -> last seq or {"epoch": …, "seq": n},'
            ' e.g. {"all": 3}',
        )
    if len(streams) > MAX_RESUME_STREAMS:
        raise _Invalid("bad_request", f"at most {MAX_RESUME_STREAMS} streams per resume")
    return tuple(_cursor(_stream(k), v) for k, v in streams.items())


def _history(obj: dict[str, Any], ref: Ref) -> History:
    limit = obj.get("limit", HISTORY_DEFAULT_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= HISTORY_MAX_LIMIT:
        raise _Invalid("bad_request", f"'limit' must be an integer from 1 to {HISTORY_MAX_LIMIT}")
    latest = obj.get("latest", False)
    if not isinstance(latest, bool):
        raise _Invalid("bad_request", "'latest' must be true or false")
    before = obj.get("before")
    if before is not None:
        before = _seq(before, "'before'")
    directions = [name for name in ("after", "before") if obj.get(name) is not None]
    if latest:
        directions.append("latest")
    if len(directions) > 1:
        raise _Invalid("bad_request", "give one of 'after', 'before' and 'latest'")
    stream = _stream(obj.get("stream"))
    return History(stream, _seq(obj.get("after", 0), "'after'"), limit, ref, before, latest)


def _members(obj: dict[str, Any], ref: Ref) -> Members:
    cursor = obj.get("cursor")
    if cursor is not None and not valid_user_id(cursor):
        raise _Invalid("bad_request", "'cursor' must be the 'next' of a members answer")
    return Members(_room(obj), ref, cursor)


def _send_message(obj: dict[str, Any], ref: Ref, max_text_chars: int) -> SendMessage:
    body = _body(obj, max_text_chars)
    cmid = _client_msg_id(obj)
    user = _user(obj)
    return SendMessage(user, body.text, ref, cmid, body.event, body.data, body.ephemeral)


def _send_room(obj: dict[str, Any], ref: Ref, max_text_chars: int) -> SendRoom:
    body = _body(obj, max_text_chars)
    cmid = _client_msg_id(obj)
    room = _room(obj)
    return SendRoom(room, body.text, ref, cmid, body.event, body.data, body.ephemeral)


def _broadcast_all(obj: dict[str, Any], ref: Ref, max_text_chars: int) -> BroadcastAll:
    body = _body(obj, max_text_chars)
    cmid = _client_msg_id(obj)
    return BroadcastAll(body.text, ref, cmid, body.event, body.data, body.ephemeral)


def parse_frame(raw: str | bytes | None, max_text_chars: int = 8192) -> Command | ProtocolError:
    """Turn one client frame into a command, or a ProtocolError. Never raises."""
    try:
        if isinstance(raw, (bytes, bytearray)):
            raw = bytes(raw).decode("utf-8")
        if raw is None:
            raise _Invalid("bad_json", "empty frame: expected a JSON object")
        obj = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return ProtocolError("bad_json", "frame is not valid UTF-8 JSON")
    except _Invalid as exc:
        return ProtocolError(exc.code, exc.message)
    if not isinstance(obj, dict):
        return ProtocolError("bad_json", "frame must be a JSON object")
    ref: Ref = None
    try:
        ref = _ref(obj)
        action = obj.get("action")
        if not isinstance(action, str):
            raise _Invalid("bad_request", "'action' is required and must be a string")
        if action == "sendMessage":
            return _send_message(obj, ref, max_text_chars)
        if action == "broadcastAll":
            return _broadcast_all(obj, ref, max_text_chars)
        if action == "join":
            return Join(_room(obj), ref)
        if action == "leave":
            return Leave(_room(obj), ref)
        if action == "sendRoom":
            return _send_room(obj, ref, max_text_chars)
        if action == "ping":
            return Ping(ref)
        if action == "whoami":
            return WhoAmI(ref)
        if action == "resume":
            return Resume(_resume(obj), ref)
        if action == "history":
            return _history(obj, ref)
        if action == "members":
            return _members(obj, ref)
        if action == "authorize":
            return Authorize(_token(obj), ref)
        shown = action if len(action) <= 32 else action[:32] + "..."
        raise _Invalid(
            "unknown_action",
            f"unknown action {shown!r}; expected one of: {', '.join(ACTIONS)}",
        )
    except _Invalid as exc:
        return ProtocolError(exc.code, exc.message, ref)


ACTIONS = (
    "sendMessage",
    "broadcastAll",
    "join",
    "leave",
    "sendRoom",
    "ping",
    "whoami",
    "resume",
    "history",
    "members",
    "authorize",
)


# --- server frames -------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def _with_ref(frame: dict[str, Any], ref: Ref) -> dict[str, Any]:
    if ref is not None:
        frame["ref"] = ref
    return frame


def message_frame(
    sender: str,
    scope: Scope,
    text: str | None,
    room: str | None = None,
    sent_at: int | None = None,
    *,
    event: str = DEFAULT_EVENT,
    data: Any = None,
    ephemeral: bool = False,
) -> dict[str, Any]:
    """A message as its recipients get it, before the log adds ``stream``, ``seq`` and
    ``epoch`` (an ephemeral one is never logged and carries ``"ephemeral": true`` instead)."""
    frame: dict[str, Any] = {
        "type": "message",
        "id": uuid.uuid4().hex,
        "from": sender,
        "scope": str(scope),
        **Body(text, event, data).fields(),
        "sentAt": now_ms() if sent_at is None else sent_at,
    }
    if room is not None:
        frame["room"] = room
    if ephemeral:
        frame["ephemeral"] = True
    return frame


def ack_frame(ref: Ref, delivered: int, failed: int, gone: int = 0, **extra: Any) -> dict[str, Any]:
    frame = {"type": "ack", "delivered": delivered, "failed": failed, "gone": gone, **extra}
    return _with_ref(frame, ref)


def ephemeral_ack_frame(ref: Ref, message_id: str, **counts: Any) -> dict[str, Any]:
    """An ephemeral send's ack: not logged, so no ``stream``/``seq``/``epoch``; the delivery
    counts in ``counts`` (a direct message's only when the deployment turns receipts on)."""
    return _with_ref({"type": "ack", "id": message_id, "ephemeral": True, **counts}, ref)


def dm_ack_frame(ref: Ref, message_id: str, **extra: Any) -> dict[str, Any]:
    """A direct message's ack: stored (logged for the recipient) under ``id``; delivery
    counts only in ``extra``, when the deployment turns receipts on."""
    return _with_ref({"type": "ack", "stored": True, "id": message_id, **extra}, ref)


def error_frame(code: str, message: str, ref: Ref = None) -> dict[str, Any]:
    return _with_ref({"type": "error", "code": code, "message": message}, ref)


def pong_frame(ref: Ref = None) -> dict[str, Any]:
    return _with_ref({"type": "pong"}, ref)


def identity_frame(
    connection_id: str, user_id: str, rooms: list[str], ref: Ref = None, role: str | None = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {
        "type": "identity",
        "connectionId": connection_id,
        "userId": user_id,
        "rooms": sorted(rooms),
    }
    if role:
        frame["role"] = role
    return _with_ref(frame, ref)


def resumed_frame(ref: Ref, streams: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return _with_ref({"type": "resumed", "streams": streams}, ref)


def history_frame(
    ref: Ref,
    stream: str,
    messages: list[dict[str, Any]],
    next_seq: int | None,
    **extra: Any,
) -> dict[str, Any]:
    """One page of a stream's log; ``extra`` has ``last``, ``epoch`` and, as they apply,
    ``prev``, ``skipped``, ``truncated`` and ``oldest`` (see replay.py)."""
    frame = {"type": "history", "stream": stream, "messages": messages, "next": next_seq, **extra}
    return _with_ref(frame, ref)


def presence_frame(
    room: str, event: str, user_id: str, info: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A user entered (first connection joined) or left (last connection gone) a room; an
    enter carries the user's ``info`` (the token's ``info`` claim) when they have one."""
    frame: dict[str, Any] = {"type": "presence", "room": room, "event": event, "userId": user_id}
    if info is not None:
        frame["info"] = info
    return frame


def members_frame(ref: Ref, roster: dict[str, Any]) -> dict[str, Any]:
    """The answer to ``members``: ``roster`` has room, count, users, truncated and, when the
    room has more users than this page, ``next`` (the cursor of the next page)."""
    return _with_ref({"type": "members", **roster}, ref)


def authorized_frame(ref: Ref, expires_at_ms: int | None) -> dict[str, Any]:
    """The answer to ``authorize``: the new token is the connection's from now on."""
    return _with_ref({"type": "authorized", "expiresAt": expires_at_ms}, ref)


def removed_frame(room: str, reason: str) -> dict[str, Any]:
    """The connection is no longer a member of ``room``: ``revoked`` by the back end,
    ``capability`` (a new token no longer allows it) or ``expired`` (an authorizer's grant
    ran out and was not renewed)."""
    return {"type": "removed", "room": room, "reason": reason}


def encode(frame: dict[str, Any]) -> bytes:
    """Serialise a server frame compactly (UTF-8, no ASCII escaping: smaller on the wire)."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
