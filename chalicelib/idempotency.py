"""Idempotent sends: a send retried with the same ``clientMsgId`` is delivered once.

A client attaches ``"clientMsgId"`` to ``sendMessage``, ``sendRoom`` and ``broadcastAll`` (an
HTTP push may carry one in its body) and sends it again, unchanged, when it retries (e.g. a send
whose ack was lost in a reconnect). The server keeps one record per ``(userId, clientMsgId)`` in
the one table (``schema.json``):

- ``PK=SENT#<userId> SK=MSG#<clientMsgId>`` with ``stream``, ``digest`` (SHA-256 of the text),
  ``at`` (ms, when the send was claimed) and ``ttl`` (``IDEMPOTENCY_TTL_SECONDS``). Put with
  ``attribute_not_exists(PK) OR ttl <= now`` **before** the message is logged or fanned out: of
  two concurrent sends with one id exactly one wins (DynamoDB evaluates the condition
  atomically with the write), and a record past its ttl counts as absent (TTL deletes only
  eventually);
- once the message is logged, one ``UpdateItem`` adds ``id`` and ``seq``.

A repeat whose record has a ``seq`` gets the original ack (same ``id``, ``stream``, ``seq``)
with ``"duplicate": true`` and zero counts (this request delivered nothing) and nothing is
sent. A repeat that arrives while the first is still being logged (a record without ``seq``)
gets ``error`` ``rate_limited``, "in progress, retry": a retry a moment later gets the ack. A
claim still without ``seq`` after ``pending_seconds`` (longer than the message function's
timeout) belonged to a writer that died; the next repeat takes it over (a conditional update on
``at``) and sends. If that writer had logged the message before dying, it is logged twice: the
one case where a retry can be delivered twice. A repeat naming another stream or another text
is refused (``bad_request``): a client reused the id for a different message.

When the log write fails nothing was sent and the claim is deleted (best effort), so a retry
sends. Cost per send with a ``clientMsgId``: the conditional put and the update, 1 WRU each
(items well under 1 KB); a repeat costs one failed conditional put (1 WRU) and, with moto or a
DynamoDB that does not return the old item, one consistent GetItem (1 RRU).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr

from chalicelib import keys, protocol
from chalicelib.keys import TTL
from chalicelib.table import ConditionFailed, Item, Table, Update


class DuplicateSend(Exception):
    """This ``clientMsgId`` was used before: the request must send nothing. The refusals
    (``SendInProgress``, ``ClientMsgIdReused``) get their frame and HTTP status from
    ``errors.classify``; ``AlreadySent`` is no error: its answer is the original's ack."""


class AlreadySent(DuplicateSend):
    """The original send was logged: answer its ack again."""

    def __init__(self, message_id: str, stream: str, seq: int, epoch: str | None = None) -> None:
        super().__init__(f"already sent as {stream} seq {seq}")
        self.message_id = message_id
        self.stream = stream
        self.seq = seq
        self.epoch = epoch  # None: recorded before streams had epochs

    def answer(self) -> dict[str, Any]:
        """The original's identity, with counts of zero: this request delivered nothing."""
        return {
            "id": self.message_id,
            "stream": self.stream,
            "seq": self.seq,
            **self._epoch(),
            "delivered": 0,
            "failed": 0,
            "gone": 0,
            "duplicate": True,
        }

    def _epoch(self) -> dict[str, Any]:
        return {} if self.epoch is None else {"epoch": self.epoch}

    def frame(self, ref: protocol.Ref) -> dict[str, Any]:
        return protocol.ack_frame(
            ref,
            0,
            0,
            0,
            id=self.message_id,
            stream=self.stream,
            seq=self.seq,
            **self._epoch(),
            duplicate=True,
        )


class SendInProgress(DuplicateSend):
    """The original send is still being logged: the client retries shortly."""

    def __init__(self) -> None:
        super().__init__("a send with this clientMsgId is still in progress; retry shortly")


class ClientMsgIdReused(DuplicateSend):
    """The id was used for a different message (another stream or text)."""

    def __init__(self) -> None:
        super().__init__("this clientMsgId was already used for a different message")


def digest(text: str) -> str:
    """What a record keeps of the text: enough to tell a retry from a reused id."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Claim:
    """This request owns the send of ``(user_id, client_msg_id)``; ``at`` marks the claim."""

    user_id: str
    client_msg_id: str
    at: int


class SendLedger:
    """The ``(userId, clientMsgId)`` records, in the one table beside the message log."""

    def __init__(
        self,
        table: Table,
        *,
        ttl_seconds: int = 86400,
        pending_seconds: float = 90.0,
    ) -> None:
        self._table = table
        self._ttl_seconds = ttl_seconds
        # A claim this old without a seq has outlived its writer (the function's timeout).
        self._pending_ms = int(pending_seconds * 1000)

    def _now_ms(self) -> int:
        return int(self._table.now() * 1000)

    def claim(self, user_id: str, client_msg_id: str, stream: str, text: str) -> Claim:
        """Own the send, or raise ``DuplicateSend`` (nothing may be sent then). DynamoDB errors
        other than the failed condition propagate: nothing was sent either."""
        now_ms = self._now_ms()
        key = keys.sent_key(user_id, client_msg_id)
        item: Item = {
            **key,
            "stream": stream,
            "digest": digest(text),
            "at": now_ms,
            TTL: now_ms // 1000 + self._ttl_seconds,
        }
        try:
            # A record past its ttl counts as absent (TTL deletes only eventually).
            self._table.put(
                item,
                condition=Attr("PK").not_exists() | Attr(TTL).lte(now_ms // 1000),
                old_on_failure=True,
            )
            return Claim(user_id, client_msg_id, now_ms)
        except ConditionFailed as failed:
            # moto (and a DynamoDB that does not return the old item) answers without it.
            old = failed.old or self._table.get(key, consistent=True)
        if old is None:  # deleted (released) between the put and the read: the retry sends
            raise SendInProgress()
        if old.get("stream") != stream or old.get("digest") != digest(text):
            raise ClientMsgIdReused()
        if "seq" in old:
            epoch = old.get("epoch") or None  # None: recorded before streams had epochs
            raise AlreadySent(str(old["id"]), stream, int(old["seq"]), epoch)
        then = int(old.get("at", 0))
        if then > now_ms - self._pending_ms:
            raise SendInProgress()
        return self._take_over(user_id, client_msg_id, then, now_ms)

    def _take_over(self, user_id: str, client_msg_id: str, then: int, now_ms: int) -> Claim:
        """The claim's writer died before logging (or after, unknowably): claim it anew."""
        try:
            self._table.update(
                keys.sent_key(user_id, client_msg_id),
                Update(set={"at": now_ms}),
                condition=Attr("at").eq(then) & Attr("seq").not_exists(),
            )
        except ConditionFailed:
            raise SendInProgress() from None  # another repeat took it over first
        return Claim(user_id, client_msg_id, now_ms)

    def complete(self, claim: Claim, logged: dict[str, Any]) -> bool:
        """Record the logged message's ``id`` and ``seq``; False if the claim was taken over
        meanwhile. DynamoDB errors propagate (the caller sends all the same)."""
        try:
            self._table.update(
                keys.sent_key(claim.user_id, claim.client_msg_id),
                Update(
                    set={
                        "id": str(logged["id"]),
                        "seq": int(logged["seq"]),
                        "epoch": str(logged.get("epoch") or ""),
                    }
                ),
                condition=Attr("at").eq(claim.at),
            )
        except ConditionFailed:
            return False
        return True

    def release(self, claim: Claim) -> None:
        """Nothing was sent: forget the claim so a retry sends (best effort: a claim left
        behind is taken over after ``pending_seconds``)."""
        try:
            self._table.delete(
                keys.sent_key(claim.user_id, claim.client_msg_id),
                condition=Attr("at").eq(claim.at) & Attr("seq").not_exists(),
            )
        except Exception:  # noqa: BLE001 - best effort, see above
            pass
