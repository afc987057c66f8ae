"""The gateway's and the app's own accounts of a reliability run: an invocation log that keeps
counting past its bounded window, and the app's structured log, counted instead of printed."""

from __future__ import annotations

import collections
import json
import logging
import threading
from typing import Any

from local_gateway import Invocation, InvocationLog


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
        # When the gateway asked for each $disconnect (the event's requestTimeEpoch, wall-clock
        # seconds): when it noticed the close, whatever the handler's queue did after.
        self.disconnect_requested: dict[str, float] = {}

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
                self.disconnect_requested[record.connection_id] = (
                    record.event["requestContext"]["requestTimeEpoch"] / 1000
                )
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
