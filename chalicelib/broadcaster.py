"""Concurrent fan-out of one payload to many connections, with a delivery report."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib import log
from chalicelib.management_api import Outcome
from chalicelib.protocol import MAX_PAYLOAD_BYTES
from chalicelib.registry import Target

_log = logging.getLogger("switchboard")
# How deep prunes may nest (a prune's leave announcement meeting more closed connections).
_MAX_PRUNE_DEPTH = 4


class PayloadTooLarge(ValueError):
    """The payload is over API Gateway's 128 KB message limit; nothing was sent."""


class Poster(Protocol):
    def start_many(self, targets: Sequence[Target], data: bytes) -> Callable[[], list[Outcome]]: ...


@dataclass
class Report:
    """What happened to one fan-out.

    ``delivered`` connections accepted the message; ``gone`` ones were closed (410) and have been
    pruned from the registry; ``failed`` ones were not reached after retries (throttled, too
    large, forbidden, 5xx, network) or not attempted before the fan-out's deadline (counted in
    ``outcomes["deadline"]``, with ``stopped_early`` set). ``failed_ids`` lists up to 100 of
    the failures.
    """

    recipients: int = 0
    delivered: int = 0
    gone: int = 0
    failed: int = 0
    failed_ids: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    stopped_early: bool = False
    # Handed to a continuation (``chalicelib.continuation``) instead of failing at the deadline.
    continued: int = 0
    # The targets read but not started when the deadline passed (what a continuation carries).
    unstarted: list[Target] = field(default_factory=list, repr=False)
    duration_ms: float = 0.0

    def hand_off(self) -> int:
        """Count the deadline's unstarted targets as ``continued`` instead of failed: a
        continuation has taken them. Returns how many."""
        moved = self.outcomes.pop("deadline", 0)
        ids = {t.connection_id for t in self.unstarted}
        self.failed -= moved
        self.failed_ids = [cid for cid in self.failed_ids if cid not in ids]
        self.continued += moved
        return moved

    def add(self, connection_id: str, outcome: Outcome) -> None:
        self._count(connection_id, outcome.value)

    def add_unattempted(self, connection_id: str, reason: str = "deadline") -> None:
        """A target read but never posted to: a failure with ``reason`` as its outcome."""
        self._count(connection_id, reason)

    def _count(self, connection_id: str, reason: str) -> None:
        self.recipients += 1
        self.outcomes[reason] = self.outcomes.get(reason, 0) + 1
        if reason == Outcome.DELIVERED.value:
            self.delivered += 1
        elif reason == Outcome.GONE.value:
            self.gone += 1
        else:
            self.failed += 1
            if len(self.failed_ids) < 100:
                self.failed_ids.append(connection_id)

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


class Broadcaster:
    """Sends one payload to many connections concurrently and reports what happened.

    When some sends fail, ``fan_out`` keeps going: every target is attempted (botocore's
    standard retry policy retries 429 and transient 5xx inside that attempt) and no failure
    raises. A 410 Gone means the socket is closed: the connection and its memberships are
    removed from the registry through ``prune``, concurrently (a prune that fails is counted in
    the report's ``outcomes["prune_failed"]`` and left to TTL). A 413 is reported and never
    retried. The returned ``Report`` counts every distinct target once, as delivered, gone or
    failed. A payload over 128 KB raises ``PayloadTooLarge`` before anything is sent.

    Targets are read lazily and handed to the gateway in batches of ``batch_size`` without
    waiting for earlier batches (they share the gateway's bounded connection pool), so the
    first posts go out while later pages and shards are still being read; at most
    ``max_pending`` batches are in flight, so a huge room is never held in memory at once.

    Every fan-out has a deadline (``deadline_seconds`` from its start, 25 s by default: under
    API Gateway's 29 s integration timeout, so a sender never sees "Endpoint request timed out"
    and retries a message that went out). Once it has passed, checked as each target is read and
    before each batch starts, no new batch starts: the batches in flight are waited for, and the
    targets read but not started are reported as failed, reason ``deadline``, with
    ``stopped_early`` set. Targets not yet read are not counted at all (counting them would read
    the rest of the registry): how many there were is unknown. A registry page that is slow to
    arrive is not interrupted; the check runs when it has. A log line marks the start of every
    fan-out and one more an early stop.
    """

    def __init__(
        self,
        gateway: Poster,
        prune: Callable[[str], Any],
        workers: int = 64,
        batch_size: int = 200,
        max_pending: int = 10,
        deadline_seconds: float = 25.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._gateway = gateway
        self._prune = prune
        self._batch_size = batch_size
        self._max_pending = max_pending
        self._deadline_seconds = deadline_seconds
        self._clock = clock
        self._pool = ThreadPoolExecutor(max_workers=min(workers, 32), thread_name_prefix="prune")
        # Set in the pool's threads while they prune: a prune may fan out itself (presence
        # announces the leave), and a fan-out inside a prune that waited on this same pool
        # for its own prunes could wait for ever once every worker did the same.
        self._in_prune = threading.local()

    def fan_out(
        self,
        targets: Iterable[Target],
        payload: bytes,
        exclude: str | None = None,
        scope: str | None = None,
        deadline: float | None = None,
        prune_gone: bool = True,
    ) -> Report:
        """Send ``payload`` to every distinct target but ``exclude``; ``deadline`` is a point
        on the broadcaster's clock (``time.monotonic``), by default ``deadline_seconds`` from
        now. ``scope`` only labels the log lines. With ``prune_gone`` False, connections found
        closed are counted ``gone`` but left for the next fan-out or their ``$disconnect``
        (presence announcements: a prune announces a leave, whose own prunes would cascade)."""
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(
                f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
            )
        started = self._clock()
        if deadline is None:
            deadline = started + self._deadline_seconds
        log.emit(event="fanout_start", scope=scope, deadlineSeconds=round(deadline - started, 3))
        report = Report()
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
                    self._finish(*pending.popleft(), report, prune_gone)
        if batch and self._clock() < deadline:
            pending.append((batch, self._start(batch, payload)))
            batch = []
        while pending:
            self._finish(*pending.popleft(), report, prune_gone)
        if batch:
            self._stop_early(batch, report, scope, started)
        report.duration_ms = round((self._clock() - started) * 1000, 2)
        return report

    def _stop_early(
        self, unstarted: list[Target], report: Report, scope: str | None, started: float
    ) -> None:
        attempted = report.recipients
        for target in unstarted:
            report.add_unattempted(target.connection_id, "deadline")
        report.unstarted.extend(unstarted)
        report.stopped_early = True
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
        self,
        batch: list[Target],
        wait: Callable[[], list[Outcome]],
        report: Report,
        prune_gone: bool = True,
    ) -> None:
        try:
            outcomes = wait()
        except Exception:  # noqa: BLE001 - as above
            _log.exception("a batch of %d posts failed", len(batch))
            outcomes = [Outcome.FAILED] * len(batch)
        gone = [t.connection_id for t, o in zip(batch, outcomes, strict=True) if o is Outcome.GONE]
        if not prune_gone:
            results = []
        elif getattr(self._in_prune, "depth", 0):
            results = [self._nested_prune(cid) for cid in gone]  # inline: never wait on the pool
        else:
            results = list(self._pool.map(self._pool_prune, gone))
        failed_prunes = sum(1 for ok in results if not ok)
        for target, outcome in zip(batch, outcomes, strict=True):
            report.add(target.connection_id, outcome)
        if failed_prunes:
            report.outcomes["prune_failed"] = report.outcomes.get("prune_failed", 0) + failed_prunes

    def _pool_prune(self, connection_id: str) -> bool:
        self._in_prune.depth = 1
        try:
            return self.prune(connection_id)
        finally:
            self._in_prune.depth = 0

    def _nested_prune(self, connection_id: str) -> bool:
        """A prune found by a fan-out that itself runs inside a prune. Past a few levels it is
        left to the connection's ``$disconnect`` or TTL (counted as a failed prune)."""
        depth = self._in_prune.depth
        if depth >= _MAX_PRUNE_DEPTH:
            return False
        self._in_prune.depth = depth + 1
        try:
            return self.prune(connection_id)
        finally:
            self._in_prune.depth = depth

    def prune(self, connection_id: str) -> bool:
        """Forget a closed connection; False (and left to TTL) if the registry failed."""
        try:
            self._prune(connection_id)
        except Exception:  # noqa: BLE001 - a failed prune must not stop the fan-out; TTL reaps it
            return False
        return True
