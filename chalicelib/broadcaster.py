"""Concurrent fan-out of one payload to many connections; returns a delivery report.

It removes nothing and announces nothing: the ids it found gone come back in the report."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from chalicelib import log
from chalicelib.management_api import Outcome
from chalicelib.protocol import MAX_PAYLOAD_BYTES
from chalicelib.registry import Target

_log = logging.getLogger("switchboard")
# How many failed connection ids a report lists (the log line stays small).
_MAX_FAILED_IDS = 100


class PayloadTooLarge(ValueError):
    """The payload is over API Gateway's 128 KB message limit; nothing was sent."""


class Poster(Protocol):
    def start_many(self, targets: Sequence[Target], data: bytes) -> Callable[[], list[Outcome]]: ...


@dataclass(frozen=True)
class Report:
    """What happened to one fan-out, as the broadcaster returns it.

    ``delivered`` connections accepted the message; ``gone`` ones were closed (410): their ids
    are in ``gone_ids`` for the caller to remove (the broadcaster removes nothing); ``failed``
    ones were not reached after retries (throttled, too large, forbidden, 5xx, network) or not
    attempted before the fan-out's deadline (counted in ``outcomes["deadline"]``, with
    ``stopped_early`` set, and listed in ``unstarted``: the remainder a continuation can carry).
    ``failed_ids`` lists up to 100 of the failures. Built by the broadcaster's tally; a
    continuation that takes the remainder makes a new one with ``continued_by``.
    """

    recipients: int = 0
    delivered: int = 0
    gone: int = 0
    failed: int = 0
    failed_ids: tuple[str, ...] = ()
    outcomes: Mapping[str, int] = field(default_factory=dict)
    stopped_early: bool = False
    # Handed to a continuation (``chalicelib.continuation``) instead of failing at the deadline.
    continued: int = 0
    # The targets read but not started when the deadline passed (what a continuation carries).
    unstarted: tuple[Target, ...] = field(default=(), repr=False)
    gone_ids: tuple[str, ...] = field(default=(), repr=False)
    duration_ms: float = 0.0

    @property
    def throttled(self) -> int:
        return self.outcomes.get(Outcome.THROTTLED.value, 0)

    def continued_by(self, also_read: int) -> Report:
        """This report once a continuation took the remainder: the deadline's unstarted
        targets count as ``continued`` instead of failed, with ``also_read`` more targets the
        audience had read but not handed out."""
        ids = {t.connection_id for t in self.unstarted}
        outcomes = dict(self.outcomes)
        moved = outcomes.pop("deadline", 0)
        return replace(
            self,
            failed=self.failed - moved,
            failed_ids=tuple(cid for cid in self.failed_ids if cid not in ids),
            outcomes=outcomes,
            continued=self.continued + moved + also_read,
        )

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, Any] = {
            "recipients": self.recipients,
            "delivered": self.delivered,
            "gone": self.gone,
            "failed": self.failed,
        }
        if self.continued:
            counts["continued"] = self.continued
        if self.stopped_early:
            # Targets not yet read when the deadline passed are in no count: unknown.
            counts["stoppedEarly"] = True
        return counts


class _Tally:
    """The counts of one fan-out while it runs; ``report()`` freezes them."""

    def __init__(self) -> None:
        self.recipients = self.delivered = self.gone = self.failed = 0
        self.failed_ids: list[str] = []
        self.gone_ids: list[str] = []
        self.outcomes: dict[str, int] = {}
        self.unstarted: list[Target] = []

    def add(self, connection_id: str, reason: str) -> None:
        self.recipients += 1
        self.outcomes[reason] = self.outcomes.get(reason, 0) + 1
        if reason == Outcome.DELIVERED.value:
            self.delivered += 1
        elif reason == Outcome.GONE.value:
            self.gone += 1
            self.gone_ids.append(connection_id)
        else:
            self.failed += 1
            if len(self.failed_ids) < _MAX_FAILED_IDS:
                self.failed_ids.append(connection_id)

    def report(self, duration_ms: float) -> Report:
        return Report(
            recipients=self.recipients,
            delivered=self.delivered,
            gone=self.gone,
            failed=self.failed,
            failed_ids=tuple(self.failed_ids),
            outcomes=dict(self.outcomes),
            stopped_early=bool(self.unstarted),
            unstarted=tuple(self.unstarted),
            gone_ids=tuple(self.gone_ids),
            duration_ms=duration_ms,
        )


class Broadcaster:
    """Sends one payload to many connections concurrently and returns what happened.

    When some sends fail, ``fan_out`` keeps going: every target is attempted (botocore's
    standard retry policy retries 429 and transient 5xx inside that attempt) and no failure
    raises. A 410 Gone means the socket is closed: the connection is counted ``gone`` and its
    id returned in the report's ``gone_ids``; removing it (and announcing its user's leave) is
    the caller's decision, made after the fan-out (``Switchboard``), so a fan-out never calls
    back into the service. A 413 is reported and never retried. The returned ``Report`` counts
    every distinct target once, as delivered, gone or failed. A payload over 128 KB raises
    ``PayloadTooLarge`` before anything is sent.

    Targets are read lazily and handed to the gateway in batches of ``batch_size`` without
    waiting for earlier batches (they share the gateway's bounded connection pool), so the
    first posts go out while later pages and shards are still being read; at most
    ``max_pending`` batches are in flight, so a huge room is never held in memory at once.

    Every fan-out has a deadline (``deadline_seconds`` from its start, 25 s by default: under
    API Gateway's 29 s integration timeout, so a sender never sees "Endpoint request timed out"
    and retries a message that went out). Once it has passed, checked as each target is read and
    before each batch starts, no new batch starts: the batches in flight are waited for, and the
    targets read but not started are reported as failed, reason ``deadline``, with
    ``stopped_early`` set, and returned in ``unstarted``. Targets not yet read are not counted
    at all (counting them would read the rest of the registry): how many there were is
    unknown. A registry page that is slow to arrive is not interrupted; the check runs when it
    has. A log line marks the start of every fan-out and one more an early stop.
    """

    def __init__(
        self,
        gateway: Poster,
        batch_size: int = 200,
        max_pending: int = 10,
        deadline_seconds: float = 25.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gateway = gateway
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._deadline_seconds = deadline_seconds
        self._clock = clock

    def fan_out(
        self,
        targets: Iterable[Target],
        payload: bytes,
        exclude: str | None = None,
        scope: str | None = None,
        deadline: float | None = None,
    ) -> Report:
        """Send ``payload`` to every distinct target but ``exclude``; ``deadline`` is a point
        on the broadcaster's clock (``time.monotonic``), by default ``deadline_seconds`` from
        now. ``scope`` only labels the log lines."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(
                f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
            )
        started = self._clock()
        if deadline is None:
            deadline = started + self._deadline_seconds
        log.emit(event="fanout_start", scope=scope, deadlineSeconds=round(deadline - started, 3))
        tally = _Tally()
        seen: set[str] = set()
        batch: list[Target] = []
        pending: deque[tuple[list[Target], Callable[[], list[Outcome]]]] = deque()
        for target in targets:
            cid = target.connection_id
            if cid == exclude or cid in seen:
                continue
            seen.add(cid)
            batch.append(target)
            if self._clock() >= deadline:
                break
            if len(batch) >= self._batch_size:
                pending.append((batch, self._start(batch, payload)))
                batch = []
                if len(pending) > self._max_pending:
                    self._finish(*pending.popleft(), tally)
        if batch and self._clock() < deadline:
            pending.append((batch, self._start(batch, payload)))
            batch = []
        while pending:
            self._finish(*pending.popleft(), tally)
        if batch:
            self._stop_early(batch, tally, scope, started)
        return tally.report(round((self._clock() - started) * 1000, 2))

    def _stop_early(
        self, unstarted: list[Target], tally: _Tally, scope: str | None, started: float
    ) -> None:
        attempted = tally.recipients
        for target in unstarted:
            tally.add(target.connection_id, "deadline")
        tally.unstarted.extend(unstarted)
        log.emit(
            logging.WARNING,
            event="fanout_deadline",
            scope=scope,
            attempted=attempted,
            notStarted=len(unstarted),
            elapsedMs=round((self._clock() - started) * 1000, 2),
        )

    def _start(self, batch: list[Target], payload: bytes) -> Callable[[], list[Outcome]]:
        try:
            return self._gateway.start_many(batch, payload)
        except Exception:  # noqa: BLE001 - a broken transport fails this batch, not the caller
            _log.exception("starting a batch of %d posts failed", len(batch))
            return lambda: [Outcome.FAILED] * len(batch)

    def _finish(
        self, batch: list[Target], wait: Callable[[], list[Outcome]], tally: _Tally
    ) -> None:
        try:
            outcomes = wait()
        except Exception:  # noqa: BLE001 - as above
            _log.exception("a batch of %d posts failed", len(batch))
            outcomes = [Outcome.FAILED] * len(batch)
        for target, outcome in zip(batch, outcomes, strict=True):
            tally.add(target.connection_id, outcome.value)
