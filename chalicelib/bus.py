"""Back-end events on Amazon EventBridge: what happened, for the rest of AWS to react to.

Off unless a stage sets ``EVENT_BUS_NAME`` (a bus name or ARN, or ``default``). Then the
switchboard emits, with ``source`` ``switchboard`` and these ``detail-type``s (the ``detail``
of each has a JSON Schema in docs/events/; docs/EVENTS.md describes them):

- ``Connection Opened`` / ``Connection Closed`` (the closed one from whichever path removed the
  connection: ``disconnect``, ``gone`` (a 410 prune), ``expired`` (its token), ``kicked``);
- ``Presence Entered`` / ``Presence Left`` for rooms with presence events;
- ``Message Undelivered``: a direct message that reached no connection of its recipient;
- ``Message Published``: a room message, for the namespaces that opt in.

Every ``detail`` carries an ``eventId`` a consumer deduplicates on: delivery is at least once
(``$disconnect`` is best effort, PutEvents is retried, EventBridge itself delivers to targets at
least once), and the id is the same whichever retry or path produced the event.

Never in the way of delivery. An ``Events`` collects what a handler emits in memory (no I/O);
the handler flushes it once at its very end, after the fan-out and after the client's ack or
error frame was posted, so a connected client never waits for EventBridge. Flushing before
the handler returns matters: Lambda freezes the container when the handler returns, and work
left on a background thread would run (if ever) during a later invocation.

``Publisher`` sends what is flushed: PutEvents takes at most 10 entries per call and each entry
must stay under 256 KB ("PutEvents", EventBridge API reference:
https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutEvents.html; the size rule is
"Calculating PutEvents event entry size": Time counts 14 bytes, Source, DetailType, Detail and
each Resources entry their UTF-8 bytes). Batches are cut at 10 entries and, to be safe whichever
way the limit is read (per entry or per request), at 256 KB of entries per call. An entry over
the limit is cut down (its preview, text or data shortened; ``truncated: true`` says so), never
dropped silently. A call that fails is retried by botocore (standard mode, throttling and 5xx);
entries a successful call reports failed (``FailedEntryCount``, an ``ErrorCode`` per entry) are
resent, with a short backoff, ``resend_attempts`` times. What still fails is counted in the
EMF metrics line (``EventsFailed``) and logged with each entry's detail-type, eventId and error.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TextIO

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import log
from chalicelib.aws_errors import error_code

SOURCE = "switchboard"
# PutEvents: "Entries ... Array Members: Minimum number of 1 item. Maximum number of 10 items."
BATCH_MAX_ENTRIES = 10
# "The maximum size for a PutEvents event entry is 256 KB" (API reference).
ENTRY_MAX_BYTES = 256 * 1024
# Time, when given, counts 14 bytes ("Calculating PutEvents event entry size").
_TIME_BYTES = 14
NAMESPACE = "Switchboard"
# PutEvents calls one flush makes at once (when it has more than 10 entries).
PARALLEL_CALLS = 4


class DetailType(StrEnum):
    """The ``detail-type`` of each event (an EventBridge rule matches on it)."""

    CONNECTION_OPENED = "Connection Opened"
    CONNECTION_CLOSED = "Connection Closed"
    PRESENCE_ENTERED = "Presence Entered"
    PRESENCE_LEFT = "Presence Left"
    MESSAGE_UNDELIVERED = "Message Undelivered"
    MESSAGE_PUBLISHED = "Message Published"


class ClosedBy(StrEnum):
    """Which path removed a connection (``Connection Closed``'s ``reason``)."""

    DISCONNECT = "disconnect"  # API Gateway's $disconnect
    GONE = "gone"  # a post answered 410: pruned by a fan-out or a reply
    EXPIRED = "expired"  # its token expired; the server closed it
    KICKED = "kicked"  # DELETE /connections/{id}


# What a room's namespace may emit (the namespace option ``events``).
PRESENCE = "presence"
PUBLISHED = "published"
ROOM_EVENTS = (PRESENCE, PUBLISHED)

# Detail members shortened, in this order, when an entry is over the limit.
_CUTTABLE = ("preview", "text", "data")


@dataclass(frozen=True)
class BusEvent:
    """One event: its detail-type, its ``detail`` (JSON-ready) and when it happened (s)."""

    detail_type: str
    detail: dict[str, Any]
    time: float


def entry_size(entry: dict[str, Any]) -> int:
    """An entry's size as EventBridge counts it ("Calculating PutEvents event entry size")."""
    size = _TIME_BYTES if entry.get("Time") is not None else 0
    size += len(entry["Source"].encode("utf-8")) + len(entry["DetailType"].encode("utf-8"))
    size += len(entry.get("Detail", "").encode("utf-8"))
    size += sum(len(r.encode("utf-8")) for r in entry.get("Resources", ()))
    return size


def _dumps(detail: dict[str, Any]) -> str:
    return json.dumps(detail, ensure_ascii=False, separators=(",", ":"), default=str)


def to_entry(
    event: BusEvent, bus_name: str, source: str = SOURCE, limit: int = ENTRY_MAX_BYTES
) -> tuple[dict[str, Any], bool]:
    """The PutEvents entry of ``event``, cut down to ``limit`` bytes; True if it was cut.

    The members in ``_CUTTABLE`` are shortened in turn, largest first (strings to their
    longest prefix that fits, ``data`` to null) and ``truncated: true`` is set; what is left of the detail (ids, names: all
    bounded by the protocol) always fits."""
    detail = dict(event.detail)
    entry: dict[str, Any] = {
        "Time": event.time,
        "Source": source,
        "DetailType": event.detail_type,
        "Detail": _dumps(detail),
        "EventBusName": bus_name,
    }
    over = entry_size(entry) - limit
    if over <= 0:
        return entry, False
    # The largest first: it alone usually makes the room.
    by_size = sorted(
        (n for n in _CUTTABLE if detail.get(n) is not None),
        key=lambda n: len(_dumps({n: detail[n]})),
        reverse=True,
    )
    for name in by_size:
        value = detail.get(name)
        if value is None:
            continue
        detail["truncated"] = True
        if isinstance(value, str):
            # JSON escapes make a character cost more than its UTF-8 bytes (a quote 2, a
            # control character 6): the longest prefix that fits, by bisection (rare: ~20
            # serializations of the detail).
            low, high = 0, len(value)
            while low < high:
                middle = (low + high + 1) // 2
                detail[name] = value[:middle]
                entry["Detail"] = _dumps(detail)
                if entry_size(entry) <= limit:
                    low = middle
                else:
                    high = middle - 1
            detail[name] = value[:low]
        else:
            detail[name] = None
        entry["Detail"] = _dumps(detail)
        over = entry_size(entry) - limit
        if over <= 0:
            break
    return entry, True


@dataclass
class Published:
    """What one flush did: entries accepted, failed after the resends, cut down; calls made."""

    sent: int = 0
    failed: int = 0
    cut: int = 0
    calls: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "eventsSent": self.sent,
            "eventsFailed": self.failed,
            "eventsCut": self.cut,
            "putEventsCalls": self.calls,
        }


def batches(entries: Sequence[dict[str, Any]], limit: int = ENTRY_MAX_BYTES) -> list[list[int]]:
    """Indexes of ``entries`` grouped for PutEvents calls: at most 10 per call and at most
    ``limit`` bytes of entries per call, in order."""
    out: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, entry in enumerate(entries):
        n = entry_size(entry)
        if current and (len(current) == BATCH_MAX_ENTRIES or size + n > limit):
            out.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current:
        out.append(current)
    return out


class Publisher:
    """Sends events to one bus with PutEvents: batched, cut to size, failed entries resent.

    ``client`` is a boto3 ``events`` client (standard retries: it retries throttled and failed
    calls itself); ``resend_attempts`` is how many more times entries a call reported failed
    are sent again, after ``backoff`` seconds doubling each time (with jitter)."""

    def __init__(
        self,
        client: Any,
        bus_name: str,
        *,
        source: str = SOURCE,
        resend_attempts: int = 3,
        backoff: float = 0.05,
        limit: int = ENTRY_MAX_BYTES,
        sleep: Callable[[float], None] = time.sleep,
        metrics_out: TextIO | None = None,
    ) -> None:
        self.client = client
        self.bus_name = bus_name
        self.source = source
        self.resend_attempts = resend_attempts
        self.backoff = backoff
        self.limit = limit
        self._sleep = sleep
        self._metrics_out = metrics_out
        self._executor: ThreadPoolExecutor | None = None  # made for a flush of many batches
        self._pool_lock = threading.Lock()

    def publish(self, events: Sequence[BusEvent]) -> Published:
        """Send ``events``; never raises. One EMF line and, for failures, one log line."""
        result = Published()
        if not events:
            return result
        entries: list[dict[str, Any]] = []
        for event in events:
            entry, cut = to_entry(event, self.bus_name, self.source, self.limit)
            if cut:
                result.cut += 1
            entries.append(entry)
        pending = list(range(len(entries)))
        last_error: dict[int, str] = {}
        for attempt in range(self.resend_attempts + 1):
            if attempt:
                delay = self.backoff * (2 ** (attempt - 1))
                self._sleep(delay * (0.5 + random.random() / 2))
            retry: list[int] = []
            groups = [
                [pending[i] for i in group]
                for group in batches([entries[i] for i in pending], self.limit)
            ]
            result.calls += len(groups)

            def call(ids: list[int]) -> list[tuple[int, str]]:
                return self._call([entries[i] for i in ids])

            # Several calls side by side (a large prune's events), in the handler's time.
            answers = map(call, groups) if len(groups) == 1 else self._pool().map(call, groups)
            for ids, failed in zip(groups, answers, strict=True):
                for index, code in failed:
                    last_error[ids[index]] = code
                    retry.append(ids[index])
            result.sent += len(pending) - len(retry)
            pending = retry
            if not pending:
                break
        result.failed = len(pending)
        for i in pending:
            detail = json.loads(entries[i]["Detail"])
            result.errors.append(
                {
                    "detailType": entries[i]["DetailType"],
                    "eventId": detail.get("eventId"),
                    "error": last_error.get(i, "unknown"),
                }
            )
        if result.failed:
            log.emit(
                logging.WARNING,
                event="events_failed",
                bus=self.bus_name,
                failed=result.failed,
                entries=result.errors,
            )
        self._emit_metrics(result)
        return result

    def _pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=PARALLEL_CALLS, thread_name_prefix="put-events"
                )
            return self._executor

    def _call(self, entries: list[dict[str, Any]]) -> list[tuple[int, str]]:
        """One PutEvents call; the (index, error code) of each entry that failed."""
        try:
            response = self.client.put_events(Entries=entries)
        except ClientError as exc:  # after botocore's own retries
            code = error_code(exc) or "ClientError"
            return [(i, code) for i in range(len(entries))]
        except BotoCoreError as exc:  # a timeout or a connection error, after the retries
            return [(i, type(exc).__name__) for i in range(len(entries))]
        if not response.get("FailedEntryCount"):
            return []
        # "Entries: ... each entry in this array corresponds to the entries in the request"
        # (PutEvents response), with ErrorCode and ErrorMessage on the failed ones.
        return [
            (i, str(answer.get("ErrorCode")))
            for i, answer in enumerate(response.get("Entries", []))
            if answer.get("ErrorCode")
        ]

    def _emit_metrics(self, result: Published) -> None:
        stream = self._metrics_out or sys.stdout
        stream.write(_dumps(metrics_line(result)) + "\n")
        stream.flush()


def metrics_line(result: Published, now_ms: int | None = None) -> dict[str, Any]:
    """The EMF object of one flush (metrics.py describes the format)."""
    names = (
        ("EventsSent", result.sent),
        ("EventsFailed", result.failed),
        ("EventsCut", result.cut),
        ("PutEventsCalls", result.calls),
    )
    line: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if now_ms is None else now_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": [[]],
                    "Metrics": [{"Name": n, "Unit": "Count"} for n, _ in names],
                }
            ],
        },
        "event": "events_metrics",
    }
    line.update(names)
    return line


class Events:
    """What a handler emits, kept in memory until ``flush`` (see the module docstring).

    Without a ``publisher`` (no ``EVENT_BUS_NAME``) every method is a no-op. Thread-safe: a
    fan-out's departures run on a pool. ``preview_chars`` bounds the preview of an undelivered
    message. ``emits(room, kind)`` says whether a room's namespace emits ``kind``
    (``presence`` or ``published``; ``ROOM_EVENTS``).
    """

    def __init__(
        self,
        publisher: Publisher | None = None,
        preview_chars: int = 200,
        emits: Callable[[str, str], bool] = lambda room, kind: kind == PRESENCE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.publisher = publisher
        self.preview_chars = preview_chars
        self.emits = emits
        self._clock = clock
        self._pending: list[BusEvent] = []
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.publisher is not None

    def emit(self, detail_type: DetailType, detail: dict[str, Any]) -> None:
        if self.publisher is None:
            return
        event = BusEvent(str(detail_type), detail, self._clock())
        with self._lock:
            self._pending.append(event)

    def flush(self) -> Published | None:
        """Send everything emitted so far (by any thread); None when nothing was pending."""
        if self.publisher is None:
            return None
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending:
            return None
        return self.publisher.publish(pending)

    def pending(self) -> list[BusEvent]:
        with self._lock:
            return list(self._pending)

    # --- the events ------------------------------------------------------------------------

    def connection_opened(self, connection_id: str, user_id: str, connected_at: int) -> None:
        self.emit(
            DetailType.CONNECTION_OPENED,
            {
                "eventId": f"opened:{connection_id}",
                "connectionId": connection_id,
                "userId": user_id,
                "connectedAt": connected_at,
            },
        )

    def connection_closed(
        self,
        connection_id: str,
        user_id: str,
        connected_at: int | None,
        reason: ClosedBy,
        close_code: int | None = None,
    ) -> None:
        """Only the path that removed the connection calls this (the registry's delete is
        conditional on the item being there), so one close has one event, bar retries."""
        closed_at = int(self._clock() * 1000)
        duration = closed_at - connected_at if connected_at else None
        self.emit(
            DetailType.CONNECTION_CLOSED,
            {
                "eventId": f"closed:{connection_id}",
                "connectionId": connection_id,
                "userId": user_id,
                "reason": str(reason),
                "closeCode": close_code,
                "connectedAt": connected_at or None,
                "closedAt": closed_at,
                "durationMs": max(0, duration) if duration is not None else None,
            },
        )

    def presence(
        self,
        room: str,
        change: str,
        user_id: str,
        stream: str,
        seq: int,
        epoch: str | None = None,
    ) -> None:
        if self.publisher is None or not self.emits(room, PRESENCE):
            return
        detail_type = DetailType.PRESENCE_ENTERED if change == "enter" else DetailType.PRESENCE_LEFT
        self.emit(
            detail_type,
            {
                "eventId": f"presence:{stream}:{epoch}:{seq}"
                if epoch
                else f"presence:{stream}:{seq}",
                "room": room,
                "event": change,
                "userId": user_id,
                "stream": stream,
                "seq": seq,
                "epoch": epoch,
            },
        )

    def undelivered(self, message: Any, to: str, reason: str) -> None:
        """A direct message (``message``: a logged ``Message``) reached no connection of
        ``to``: ``reason`` ``no_connections`` (none registered) or ``gone`` (every post 410)."""
        if self.publisher is None:
            return
        stream, seq = message.position
        preview, cut = _preview(message, self.preview_chars)
        self.emit(
            DetailType.MESSAGE_UNDELIVERED,
            {
                "eventId": _message_event_id("undelivered", message),
                "messageId": message.id,
                "stream": stream,
                "seq": seq,
                "epoch": getattr(message, "epoch", None),
                "from": message.sender,
                "to": to,
                "event": _event_name(message),
                "reason": reason,
                "preview": preview,
                "previewTruncated": cut,
                "sentAt": message.sent_at,
            },
        )

    def published(self, message: Any) -> None:
        """A logged room message, when its room's namespace publishes (``published``)."""
        room = message.room
        if self.publisher is None or room is None or getattr(message, "ephemeral", False):
            return  # ephemeral sends are not logged, nor published
        if not self.emits(room, PUBLISHED):
            return
        stream, seq = message.position
        detail: dict[str, Any] = {
            "eventId": _message_event_id("published", message),
            "messageId": message.id,
            "stream": stream,
            "seq": seq,
            "epoch": getattr(message, "epoch", None),
            "room": room,
            "from": message.sender,
            "event": _event_name(message),
            "text": message.text,
            "sentAt": message.sent_at,
        }
        data = getattr(message, "data", None)
        if data is not None:
            detail["data"] = data
        self.emit(DetailType.MESSAGE_PUBLISHED, detail)


def _message_event_id(kind: str, message: Any) -> str:
    """``<kind>:<stream>:<seq>``, with the stream's epoch when it has one
    (``<kind>:<stream>:<epoch>:<seq>``): a stream recreated after a reset starts its seqs
    again, and its events must not be taken for the old ones."""
    stream, seq = message.position
    epoch = getattr(message, "epoch", None)
    return f"{kind}:{stream}:{epoch}:{seq}" if epoch else f"{kind}:{stream}:{seq}"


def _event_name(message: Any) -> str:
    # The event model's `event` name (default "message") once messages carry one.
    return str(getattr(message, "event", None) or "message")


def _preview(message: Any, chars: int) -> tuple[str, bool]:
    """The first ``chars`` characters of the text (or of the data as JSON, without text)."""
    text = message.text
    if not text:
        data = getattr(message, "data", None)
        text = "" if data is None else json.dumps(data, ensure_ascii=False)
    return text[:chars], len(text) > chars


def flush_quietly(events: Events, record: dict[str, Any] | None = None) -> None:
    """Flush at a handler's end; adds what was sent to the handler's log ``record``."""
    try:
        result = events.flush()
    except Exception as exc:  # noqa: BLE001 - events must never fail a handler
        log.emit(logging.ERROR, event="events_error", error=type(exc).__name__)
        return
    if result is not None and record is not None:
        record.update({k: v for k, v in result.as_dict().items() if v})


__all__ = [
    "BusEvent",
    "ClosedBy",
    "DetailType",
    "Events",
    "Published",
    "Publisher",
    "SOURCE",
    "batches",
    "entry_size",
    "flush_quietly",
    "to_entry",
]
