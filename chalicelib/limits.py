"""Abuse limits that hold across Lambda containers: their state lives in DynamoDB.

Every frame is its own Lambda invocation and any number of containers run side by side, so a
limit kept in a process would bind one container, not the user. Three limits:

- ``MAX_CONNECTIONS_PER_USER``: on ``$connect`` the user's live connections are counted (a GSI1
  Query with ``Select=COUNT`` and ``ttl > now``, paged) before the new one is registered; at
  the cap the handshake is refused with 429.
- ``MAX_ROOMS_PER_USER``: on a join of a room new to the connection, the distinct rooms of all
  the user's live connections are read (GSI1 Query, then BatchGetItem of their ``rooms``); a
  room none of them holds is refused at the cap.
- ``MESSAGE_RATE`` / ``MESSAGE_BURST``: a token bucket per connection, refilled at
  ``MESSAGE_RATE`` frames/s up to ``MESSAGE_BURST``. Kept as GCRA (the generic cell rate
  algorithm, the token bucket's exact equivalent with one number of state): the connection
  item's ``rateTat`` is the theoretical arrival time (epoch microseconds) of the next frame
  at the sustained rate. A frame at ``now`` conforms while ``rateTat <= now + tau`` (``tau``
  = ``(burst - 1)`` intervals) and moves it to ``max(rateTat, now) + interval``. DynamoDB's
  update expressions have no ``max()``, so the two branches are two conditional UpdateItems:
  ``rateTat <= now`` (a full bucket: set ``now + interval``) and ``now < rateTat <= now +
  tau`` (add ``interval``). A failed condition returns the item
  (``ReturnValuesOnConditionCheckFailure``), which says which branch holds or that the frame is
  over the limit. ``rateTat`` only ever grows, so a frame needs at most two writes, never a
  retry loop, and the conditions make the bucket exact however many containers share it.

Why the connection cap counts instead of keeping a per-user counter item: ``$disconnect`` is
best-effort (API Gateway may never deliver it), so a counter decremented there would leak and
lock the user out until someone repaired it; a count of live items (``ttl`` filtered) heals
itself. The price is a race: handshakes of one user that run at the same moment can all pass
the count (and GSI1 is eventually consistent, typically well under a second), so the cap can be
overshot by the handshakes in flight. The rooms cap has the same kind of race (two joins of one
user at once on different connections). Both are accepted and documented in docs/PROTOCOL.md; the
rate limit has no such gap.

The connection cap and the rate limit fail open: if DynamoDB cannot answer the check, the
handshake or frame goes on (and meets the same DynamoDB in its own work); the event log says
so. A join whose rooms cannot be read fails like any join DynamoDB refuses (nothing joined).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import protocol
from chalicelib.aws_errors import error_code
from chalicelib.config import Settings
from chalicelib.registry import TTL, ConnectionRecord, Registry

_MICROS = 1_000_000
# BatchGetItem takes at most 100 keys per call (DynamoDB API reference, BatchGetItem).
_BATCH_GET_KEYS = 100


@dataclass(frozen=True)
class Verdict:
    """Whether one frame may go on; if not, how long until the next one would."""

    allowed: bool
    retry_after_ms: int = 0
    # The DynamoDB error code when the check itself failed (the frame was let through).
    error: str | None = None

    def frame(self, ref: protocol.Ref) -> dict[str, Any]:
        """The ``rate_limited`` error frame for a refused frame."""
        return {
            **protocol.error_frame(
                "rate_limited",
                f"too many frames on this connection; nothing was done, retry in "
                f"{self.retry_after_ms} ms",
                ref,
            ),
            "retryAfterMs": self.retry_after_ms,
        }


ALLOWED = Verdict(True)


class Limits:
    """The three limits over the registry's table (a low-level boto3 DynamoDB client)."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ddb = client
        self._table = table_name
        self._clock = clock
        self.max_connections = settings.max_connections_per_user
        self.max_rooms = settings.max_rooms_per_user
        self._interval = max(1, round(_MICROS / settings.message_rate))
        self._tau = (settings.message_burst - 1) * self._interval

    @classmethod
    def over(cls, registry: Registry, settings: Settings) -> Limits:
        """Limits on ``registry``'s table, client and clock (what the registry's reads compare
        ``ttl`` with is what the limits compare it with too)."""
        return cls(registry._ddb, registry._table, settings, registry.now)

    # --- connections per user -------------------------------------------------------------

    def connection_refusal(self, user_id: str) -> str | None:
        """Why a new connection of ``user_id`` is refused, or None to let it in. Raises
        botocore's errors (the caller decides to fail open)."""
        if self.live_connections(user_id) >= self.max_connections:
            return f"too many connections for this user (limit {self.max_connections})"
        return None

    def live_connections(self, user_id: str) -> int:
        params = self._user_query(user_id, Select="COUNT")
        count = 0
        while True:
            response = self._ddb.query(**params)
            count += int(response.get("Count", 0))  # after the filter
            last = response.get("LastEvaluatedKey")
            if not last or count >= self.max_connections:
                return count
            params["ExclusiveStartKey"] = last

    def _user_query(self, user_id: str, **extra: Any) -> dict[str, Any]:
        """A Query of the user's live connections on GSI1 (the registry's users index)."""
        return {
            "TableName": self._table,
            "IndexName": "GSI1",
            "KeyConditionExpression": "GSI1PK = :pk",
            "FilterExpression": "#ttl > :now",
            "ExpressionAttributeNames": {"#ttl": TTL},
            "ExpressionAttributeValues": {
                ":pk": {"S": f"USER#{user_id}"},
                ":now": {"N": str(int(self._clock()))},
            },
            **extra,
        }

    # --- rooms per user -------------------------------------------------------------------

    def room_refusal(self, conn: ConnectionRecord, room: str) -> str | None:
        """Why ``conn`` may not join ``room`` under the per-user cap, or None. A room another
        connection of the user already holds is no new room. Raises botocore's errors."""
        if room in conn.rooms:
            return None
        rooms = set(conn.rooms) | self.user_rooms(conn.user_id)
        if room in rooms or len(rooms) < self.max_rooms:
            return None
        return f"at most {self.max_rooms} rooms per user, across all of its connections"

    def user_rooms(self, user_id: str) -> set[str]:
        """The distinct rooms of the user's live connections."""
        rooms: set[str] = set()
        ids = list(self._user_connection_ids(user_id))
        for start in range(0, len(ids), _BATCH_GET_KEYS):
            for item in self._batch_get(ids[start : start + _BATCH_GET_KEYS]):
                if int(item.get(TTL, {}).get("N", "0")) > int(self._clock()):
                    rooms.update(item.get("rooms", {}).get("SS", []))
        return rooms

    def _user_connection_ids(self, user_id: str) -> Iterator[str]:
        params = self._user_query(user_id, ProjectionExpression="connectionId")
        while True:
            response = self._ddb.query(**params)
            for item in response.get("Items", []):
                if "connectionId" in item:
                    yield str(item["connectionId"]["S"])
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    def _batch_get(self, connection_ids: list[str]) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            self._table: {
                "Keys": [_conn_key(cid) for cid in connection_ids],
                "ProjectionExpression": "rooms, #ttl",
                "ExpressionAttributeNames": {"#ttl": TTL},
            }
        }
        items: list[dict[str, Any]] = []
        for attempt in range(8):
            response = self._ddb.batch_get_item(RequestItems=request)
            items.extend(response.get("Responses", {}).get(self._table, []))
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return items
            time.sleep(min(0.05 * 2**attempt, 1.0))
        # Rooms of unread connections are unknown: counting without them lets the join in,
        # the same direction as every other failure of a limit.
        return items

    # --- frames per connection ------------------------------------------------------------

    def take_frame(self, connection_id: str) -> Verdict:
        """Take one token from the connection's bucket: at most two conditional UpdateItems.
        An unknown connection passes (the dispatch answers ``not_found``); a DynamoDB error
        passes too, with ``error`` set."""
        now = int(self._clock() * _MICROS)
        try:
            # Each step answers None (the update applied: a token taken), {} (no such
            # connection) or the item that failed the condition.
            old = self._refill(connection_id, now)
            if not old:
                return ALLOWED
            tat = _tat(old)  # > now, or the refill would have applied
            if tat <= now + self._tau:
                old = self._advance(connection_id, now)
                if not old:
                    return ALLOWED
                tat = _tat(old)  # grew past now + tau meanwhile: over the limit now
        except (ClientError, BotoCoreError) as exc:
            return Verdict(True, error=error_code(exc))
        return Verdict(False, retry_after_ms=max(1, math.ceil((tat - self._tau - now) / 1000)))

    def _refill(self, connection_id: str, now: int) -> dict[str, Any] | None:
        """The full-bucket branch (``rateTat <= now``)."""
        return self._conditional(
            connection_id,
            "SET rateTat = :next",
            "attribute_exists(PK) AND (attribute_not_exists(rateTat) OR rateTat <= :now)",
            {":next": {"N": str(now + self._interval)}, ":now": {"N": str(now)}},
        )

    def _advance(self, connection_id: str, now: int) -> dict[str, Any] | None:
        """The partly-drained branch (``now < rateTat <= now + tau``)."""
        return self._conditional(
            connection_id,
            "SET rateTat = rateTat + :interval",
            "attribute_exists(PK) AND rateTat > :now AND rateTat <= :limit",
            {
                ":interval": {"N": str(self._interval)},
                ":now": {"N": str(now)},
                ":limit": {"N": str(now + self._tau)},
            },
        )

    def _conditional(
        self, connection_id: str, update: str, condition: str, values: dict[str, Any]
    ) -> dict[str, Any] | None:
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=_conn_key(connection_id),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException as exc:
            item: dict[str, Any] = exc.response.get("Item") or {}
            return item
        return None


def _tat(item: dict[str, Any]) -> int:
    """``rateTat`` of a connection item; an item without one (or no item) is a full bucket."""
    return int(item.get("rateTat", {}).get("N", "0"))


def _conn_key(connection_id: str) -> dict[str, Any]:
    # The registry's connection key (registry.py): the bucket lives on the connection item, so
    # it goes when the connection does.
    return {"PK": {"S": f"CONN#{connection_id}"}, "SK": {"S": "CONN"}}
