"""What makes a continuation job trustworthy: its signature and expiry, and its one-time claim.

Anyone allowed to send to the continuation queue could otherwise make the worker resend any
logged message (another user's direct message) to any connection, or POST it to any URL signed
with the function's credentials. So:

- **Signed.** A job body is ``<HMAC-SHA256 hex>.<payload JSON>``; the MAC covers the payload's
  exact bytes (checked with ``hmac.compare_digest`` before the JSON is parsed) under a per-stage
  key: ``CONTINUATION_KEY`` / ``CONTINUATION_KEY_PARAMETER`` (an SSM SecureString) when set,
  else one derived from the stage's HMAC JWT secret (``HMAC(secret, "switchboard continuation
  job key")``: a separate key, and whoever holds the JWT secret can mint admin tokens and
  broadcast anyway). The payload carries a job ``id`` and an expiry ``exp`` (epoch seconds).
- **Refused, never delivered:** a bad signature, a malformed payload or an expired job raises
  ``RefusedJob``; the worker logs it and reports the record in ``batchItemFailures``, so SQS's
  redrive policy moves it to the dead-letter queue after ``maxReceiveCount`` receives (SQS
  developer guide, "Using dead-letter queues in Amazon SQS"). Not moved by the worker itself:
  that would need the DLQ's URL and ``sqs:SendMessage`` on it in every stage's policy, and the
  redrive keeps the message's own attributes (its receive count, its first-sent time).
- **Once.** A valid job may arrive twice: SQS delivers at least once, and anyone who can read
  a job off the queue (or its DLQ) can send it again until it expires. Before it posts, the
  worker claims the job id with a conditional put through the table layer (``JobLedger``); a
  job already done is acknowledged without sending. The endpoint is never the job's: see ``continuation.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable

from boto3.dynamodb.conditions import Attr

from chalicelib import keys
from chalicelib.config import Settings
from chalicelib.keys import TTL
from chalicelib.table import ConditionFailed, Table, Update

_RUNNING = "running"
_DONE = "done"
# Domain separation: a MAC made for anything else with the same key is never a job's.
_CONTEXT = b"switchboard-continuation-job\n"
_DERIVE = b"switchboard continuation job key"
MAC_HEX_CHARS = 64
# A claim still "running" this long after it was taken belonged to a worker that died (the
# continue_fan_out function's timeout is 60 s in .chalice/config.json; its fan-out stops at
# FANOUT_DEADLINE_SECONDS): the next delivery takes it over and sends.
CLAIM_STALE_SECONDS = 120


class RefusedJob(ValueError):
    """A queue message that is not a job this stage signed, or one past its expiry."""


def derive_key(jwt_secret: str) -> bytes:
    """The job key of a stage whose only secret is its HMAC JWT secret."""
    return hmac.new(jwt_secret.encode("utf-8"), _DERIVE, hashlib.sha256).digest()


def job_key(settings: Settings) -> bytes | None:
    """The stage's job key: the configured one, else derived from an HMAC JWT secret; None
    when there is neither (``Settings.from_env`` refuses that when a queue is configured)."""
    if settings.continuation_key:
        return settings.continuation_key.encode("utf-8")
    if (
        settings.auth_mode == "jwt"
        and settings.jwt_secret
        and settings.jwt_algorithm.startswith("HS")
    ):
        return derive_key(settings.jwt_secret)
    return None


class JobSigner:
    """Signs job payloads and checks signed bodies; ``clock`` gives epoch seconds."""

    def __init__(
        self, key: bytes, ttl_seconds: int = 900, clock: Callable[[], float] = time.time
    ) -> None:
        if len(key) < 32:
            raise ValueError("a continuation job key must be at least 32 bytes")
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def expiry(self) -> int:
        return int(self._clock()) + self.ttl_seconds

    def _mac(self, payload: bytes) -> str:
        return hmac.new(self._key, _CONTEXT + payload, hashlib.sha256).hexdigest()

    def sign(self, payload: str) -> str:
        return f"{self._mac(payload.encode('utf-8'))}.{payload}"

    def open(self, body: str) -> str:
        """The payload of a body this key signed; ``RefusedJob`` for anything else. The
        expiry is the caller's to check once the payload is parsed (``check_expiry``)."""
        mac, dot, payload = body.partition(".")
        if not dot or len(mac) != MAC_HEX_CHARS:
            raise RefusedJob("not a signed continuation job")
        expected = self._mac(payload.encode("utf-8", "surrogatepass"))
        if not hmac.compare_digest(mac.encode("ascii", "replace"), expected.encode("ascii")):
            raise RefusedJob("continuation job signature does not match")
        return payload

    def check_expiry(self, exp: int) -> None:
        if exp <= self._clock():
            raise RefusedJob(f"continuation job expired at {exp}")


class JobLedger:
    """One item per job id, in the one table (``keys.job_claim_key``: ``PK=JOB#<id> SK=JOB``)
    with ``state`` (running or done), ``at`` (epoch seconds it was claimed) and ``ttl`` (the
    job's own expiry: a replay after it is refused by its signature check before the ledger
    is read). Time is the table's clock.

    Cost per job: one conditional PutItem and one UpdateItem (1 WRU each); a duplicate costs
    one failed conditional put.
    """

    CLAIMED = "claimed"
    DONE = "done"  # already run to the end: acknowledge, send nothing
    BUSY = "busy"  # another worker runs it now: try again after the visibility timeout

    def __init__(self, table: Table, stale_seconds: int = CLAIM_STALE_SECONDS) -> None:
        self._table = table
        self._stale = stale_seconds

    def claim(self, job_id: str, expires_at: int) -> str:
        """``CLAIMED`` (this worker runs the job), ``DONE`` or ``BUSY``. A running claim
        older than ``stale_seconds`` (its worker died) is taken over."""
        now = int(self._table.now())
        key = keys.job_claim_key(job_id)
        try:
            self._table.put(
                {**key, "state": _RUNNING, "at": now, TTL: expires_at},
                # Absent, past its ttl (TTL deletes only eventually), or a dead worker's.
                condition=(
                    Attr("PK").not_exists()
                    | Attr(TTL).lte(now)
                    | (Attr("state").eq(_RUNNING) & Attr("at").lte(now - self._stale))
                ),
                old_on_failure=True,
            )
            return self.CLAIMED
        except ConditionFailed as exc:
            old = exc.old or self._table.get(key, consistent=True) or {}
        return self.DONE if old.get("state") == _DONE else self.BUSY

    def complete(self, job_id: str) -> None:
        self._table.update(keys.job_claim_key(job_id), Update(set={"state": _DONE}))

    def release(self, job_id: str) -> None:
        """The job failed before its end: SQS will deliver it again, and that delivery must
        not find it claimed (best effort: a claim left behind goes stale)."""
        try:
            self._table.delete(keys.job_claim_key(job_id))
        except Exception:  # noqa: BLE001 - the stale rule frees it all the same
            pass
