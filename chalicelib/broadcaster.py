"""Concurrent fan-out of one payload to many connections, with a delivery report."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.gateway import Outcome
from chalicelib.protocol import MAX_PAYLOAD_BYTES
from chalicelib.registry import Target


class PayloadTooLarge(ValueError):
    """The payload is over API Gateway's 128 KB message limit; nothing was sent."""


class Poster(Protocol):
    def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome: ...


@dataclass
class Report:
    """What happened to one fan-out.

    ``delivered`` connections accepted the message; ``gone`` ones were closed (410) and have been
    pruned from the registry; ``failed`` ones were not reached after retries (throttled, too
    large, forbidden, 5xx, network). ``failed_ids`` lists up to 100 of the failures.
    """

    recipients: int = 0
    delivered: int = 0
    gone: int = 0
    failed: int = 0
    failed_ids: list[str] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, connection_id: str, outcome: Outcome) -> None:
        self.recipients += 1
        self.outcomes[outcome.value] = self.outcomes.get(outcome.value, 0) + 1
        if outcome is Outcome.DELIVERED:
            self.delivered += 1
        elif outcome is Outcome.GONE:
            self.gone += 1
        else:
            self.failed += 1
            if len(self.failed_ids) < 100:
                self.failed_ids.append(connection_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "recipients": self.recipients,
            "delivered": self.delivered,
            "gone": self.gone,
            "failed": self.failed,
        }


class Broadcaster:
    """Sends one payload to many connections through a shared thread pool.

    When some sends fail, ``fan_out`` keeps going: every target is attempted exactly once
    (botocore retries 429 and transient 5xx inside that attempt, in standard mode), and no
    failure raises. A 410 Gone means the socket is closed: the connection and its memberships
    are removed from the registry through ``prune`` (a failing prune is counted in the report's
    ``outcomes["prune_failed"]`` and left to TTL). A 413 is reported and never retried. The
    returned ``Report`` counts every target once as delivered, gone or failed. A payload over
    128 KB raises ``PayloadTooLarge`` before anything is sent.
    """

    def __init__(
        self,
        gateway: Poster,
        prune: Callable[[str], Any],
        workers: int = 64,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self._gateway = gateway
        self._prune = prune
        self._workers = workers
        self._pool = executor or ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="fanout"
        )

    def fan_out(
        self, targets: Iterable[Target], payload: bytes, exclude: str | None = None
    ) -> Report:
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise PayloadTooLarge(
                f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
            )
        report = Report()
        lock = threading.Lock()
        seen: set[str] = set()
        pending: set[Future[None]] = set()
        # Bound what is queued so a 100k-member fan-out does not hold 100k futures at once.
        high_water = self._workers * 4

        def send(target: Target) -> None:
            try:
                outcome = self._gateway.post(target.connection_id, payload, target.endpoint)
            except Exception:  # noqa: BLE001 - one broken send is counted, never fatal
                outcome = Outcome.FAILED
            pruned = True
            if outcome is Outcome.GONE:
                pruned = self.prune(target.connection_id)
            with lock:
                report.add(target.connection_id, outcome)
                if not pruned:
                    report.outcomes["prune_failed"] = report.outcomes.get("prune_failed", 0) + 1

        for target in targets:
            cid = target.connection_id
            if cid == exclude or cid in seen:
                continue
            seen.add(cid)
            pending.add(self._pool.submit(send, target))
            if len(pending) >= high_water:
                _done, pending = wait(pending, return_when=FIRST_COMPLETED)
        wait(pending)
        return report

    def prune(self, connection_id: str) -> bool:
        """Forget a closed connection; False (and left to TTL) if the registry failed."""
        try:
            self._prune(connection_id)
        except Exception:  # noqa: BLE001 - a failed prune must not stop the fan-out; TTL reaps it
            return False
        return True
