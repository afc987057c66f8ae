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
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import protocol
from chalicelib.aws_errors import error_code
from chalicelib.message_log import MessageLog
from chalicelib.schema import ttl_attribute

TTL = ttl_attribute()
_CONDITION_FAILED = "ConditionalCheckFailedException"


class DuplicateSend(Exception):
    """This ``clientMsgId`` was used before: the request must send nothing. The refusals
    (``SendInProgress``, ``ClientMsgIdReused``) get their frame and HTTP status from
    ``errors.classify``; ``AlreadySent`` is no error: its answer is the original's ack."""


class AlreadySent(DuplicateSend):
    """The original send was logged: answer its ack again."""

    def __init__(self, message_id: str, stream: str, seq: int) -> None:
        super().__init__(f"already sent as {stream} seq {seq}")
        self.message_id = message_id
        self.stream = stream
        self.seq = seq

    def answer(self) -> dict[str, Any]:
        """The original's identity, with counts of zero: this request delivered nothing."""
        return {
            "id": self.message_id,
            "stream": self.stream,
            "seq": self.seq,
            "delivered": 0,
            "failed": 0,
            "gone": 0,
            "duplicate": True,
        }

    def frame(self, ref: protocol.Ref) -> dict[str, Any]:
        return protocol.ack_frame(
            ref, 0, 0, 0, id=self.message_id, stream=self.stream, seq=self.seq, duplicate=True
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
    """The ``(userId, clientMsgId)`` records, in the message log's table through its client."""

    def __init__(
        self,
        log: MessageLog,
        *,
        ttl_seconds: int = 86400,
        pending_seconds: float = 90.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ddb, self._table = log.client, log.table_name  # beside the log, in its table
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        # A claim this old without a seq has outlived its writer (the function's timeout).
        self._pending_ms = int(pending_seconds * 1000)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _key(self, user_id: str, client_msg_id: str) -> dict[str, Any]:
        return {"PK": {"S": f"SENT#{user_id}"}, "SK": {"S": f"MSG#{client_msg_id}"}}

    def claim(self, user_id: str, client_msg_id: str, stream: str, text: str) -> Claim:
        """Own the send, or raise ``DuplicateSend`` (nothing may be sent then). DynamoDB errors
        other than the failed condition propagate: nothing was sent either."""
        now_ms = self._now_ms()
        key = self._key(user_id, client_msg_id)
        item = {
            **key,
            "stream": {"S": stream},
            "digest": {"S": digest(text)},
            "at": {"N": str(now_ms)},
            TTL: {"N": str(now_ms // 1000 + self._ttl_seconds)},
        }
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(PK) OR #ttl <= :now",
                ExpressionAttributeNames={"#ttl": TTL},
                ExpressionAttributeValues={":now": {"N": str(now_ms // 1000)}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return Claim(user_id, client_msg_id, now_ms)
        except ClientError as exc:
            if error_code(exc) != _CONDITION_FAILED:
                raise
            old = exc.response.get("Item") or self._read(key)
        if old is None:  # deleted (released) between the put and the read: the retry sends
            raise SendInProgress()
        if old.get("stream", {}).get("S") != stream or old.get("digest", {}).get("S") != digest(
            text
        ):
            raise ClientMsgIdReused()
        if "seq" in old:
            raise AlreadySent(old["id"]["S"], stream, int(old["seq"]["N"]))
        then = int(old.get("at", {}).get("N", "0"))
        if then > now_ms - self._pending_ms:
            raise SendInProgress()
        return self._take_over(user_id, client_msg_id, then, now_ms)

    def _read(self, key: dict[str, Any]) -> dict[str, Any] | None:
        item: dict[str, Any] | None = self._ddb.get_item(
            TableName=self._table, Key=key, ConsistentRead=True
        ).get("Item")
        return item

    def _take_over(self, user_id: str, client_msg_id: str, then: int, now_ms: int) -> Claim:
        """The claim's writer died before logging (or after, unknowably): claim it anew."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(user_id, client_msg_id),
                UpdateExpression="SET #at = :now",
                ConditionExpression="#at = :then AND attribute_not_exists(seq)",
                ExpressionAttributeNames={"#at": "at"},
                ExpressionAttributeValues={
                    ":now": {"N": str(now_ms)},
                    ":then": {"N": str(then)},
                },
            )
        except ClientError as exc:
            if error_code(exc) != _CONDITION_FAILED:
                raise
            raise SendInProgress() from None  # another repeat took it over first
        return Claim(user_id, client_msg_id, now_ms)

    def complete(self, claim: Claim, logged: dict[str, Any]) -> bool:
        """Record the logged message's ``id`` and ``seq``; False if the claim was taken over
        meanwhile. DynamoDB errors propagate (the caller sends all the same)."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(claim.user_id, claim.client_msg_id),
                UpdateExpression="SET #id = :id, seq = :seq",
                ConditionExpression="#at = :at",
                ExpressionAttributeNames={"#id": "id", "#at": "at"},
                ExpressionAttributeValues={
                    ":id": {"S": str(logged["id"])},
                    ":seq": {"N": str(logged["seq"])},
                    ":at": {"N": str(claim.at)},
                },
            )
        except ClientError as exc:
            if error_code(exc) != _CONDITION_FAILED:
                raise
            return False
        return True

    def release(self, claim: Claim) -> None:
        """Nothing was sent: forget the claim so a retry sends (best effort: a claim left
        behind is taken over after ``pending_seconds``)."""
        try:
            self._ddb.delete_item(
                TableName=self._table,
                Key=self._key(claim.user_id, claim.client_msg_id),
                ConditionExpression="#at = :at AND attribute_not_exists(seq)",
                ExpressionAttributeNames={"#at": "at"},
                ExpressionAttributeValues={":at": {"N": str(claim.at)}},
            )
        except Exception:  # noqa: BLE001 - best effort, see above
            pass
