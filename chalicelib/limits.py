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
  Which branch to try first is guessed from the ``rateTat`` this container last saw for the
  connection: one past ``now`` means the bucket is still part-drained (it only grows), so the
  second branch goes first; nothing seen, or a time already past, means a full bucket. Within
  one container the guess is always right (one write per frame, a ping's keepalive included);
  a frame that reaches a container which has not seen the connection's last frames, while its
  bucket is part-drained, pays the failed first write (both writes are billed).

The bucket's write also reads the connection: it returns the item as it leaves it
(``ReturnValues=ALL_NEW``; a refusal returns it as it was), and that is the frame's sender
(user, rooms, role, token expiry) for the dispatch, which so needs no GetItem. DynamoDB
charges nothing for the returned item (UpdateItem API reference, "ReturnValues": "There is
no additional cost associated with requesting a return value aside from the small network
and processing overhead of receiving a larger response").

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
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import keys, protocol
from chalicelib.aws_errors import error_code
from chalicelib.config import Settings
from chalicelib.keys import TTL
from chalicelib.registry import ConnectionRecord, Registry
from chalicelib.table import ConditionFailed, Item, Query, Table, Update, live, query_all

_MICROS = 1_000_000
# Connections whose last rateTat a container remembers (a dict of ints: well under 1 MB).
_SEEN_MAX = 10_000


@dataclass(frozen=True)
class Verdict:
    """Whether one frame may go on; if not, how long until the next one would."""

    allowed: bool
    retry_after_ms: int = 0
    # The DynamoDB error code when the check itself failed (the frame was let through).
    error: str | None = None
    # What the bucket's write says of the connection: ``known`` is True when DynamoDB
    # answered for the item, which is then ``connection`` (None: no such connection).
    known: bool = False
    connection: Item | None = None

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
    """The three limits over the one table (the registry's connection items and index)."""

    def __init__(self, table: Table, settings: Settings) -> None:
        self._table = table
        self.max_connections = settings.max_connections_per_user
        self.max_rooms = settings.max_rooms_per_user
        self._interval = max(1, round(_MICROS / settings.message_rate))
        self._tau = (settings.message_burst - 1) * self._interval
        # The rateTat this container last saw per connection: which branch to try first.
        self._seen: dict[str, int] = {}

    @classmethod
    def over(cls, registry: Registry, settings: Settings) -> Limits:
        """Limits on the table ``registry`` writes to (and so on its clock)."""
        return cls(registry.table, settings)

    def _now_us(self) -> int:
        """The table's clock in whole microseconds, rounded (not truncated): epoch seconds in
        a float are exact to about 0.2 µs, so ``int()`` of ``t + 0.1`` s could land 1 µs
        short of ``t`` + one interval and refuse a frame the bucket holds a token for."""
        return round(self._table.now() * _MICROS)

    # --- connections per user -------------------------------------------------------------

    def connection_refusal(self, user_id: str) -> str | None:
        """Why a new connection of ``user_id`` is refused, or None to let it in. Raises
        botocore's errors (the caller decides to fail open)."""
        if self.live_connections(user_id) >= self.max_connections:
            return f"too many connections for this user (limit {self.max_connections})"
        return None

    def live_connections(self, user_id: str) -> int:
        """The user's live connections (a GSI1 Query, ``Select=COUNT``), counted up to the cap."""
        return self._table.count(self._user_query(user_id), stop_at=self.max_connections)

    @staticmethod
    def _user_query(user_id: str, **extra: Any) -> Query:
        """A Query of the user's live connections on GSI1 (the registry's users index)."""
        return Query(keys.user_partition(user_id), index=keys.USERS_INDEX, live=True, **extra)

    # --- rooms per user -------------------------------------------------------------------

    def room_refusal(self, conn: ConnectionRecord, room: str) -> str | None:
        """Why ``conn`` may not join ``room`` under the per-user cap, or None. A room another
        connection of the user already holds is no new room. Raises botocore's errors."""
        if room in conn.rooms:
            return None
        rooms = set(conn.rooms) | self.user_rooms(conn.user_id, skip=conn.connection_id)
        if room in rooms or len(rooms) < self.max_rooms:
            return None
        return f"at most {self.max_rooms} rooms per user, across all of its connections"

    def user_rooms(self, user_id: str, skip: str | None = None) -> set[str]:
        """The distinct rooms of the user's live connections but ``skip`` (one whose rooms
        the caller holds: a user with no other connection costs the Query alone, no batch
        read). Rooms of connections a batch read leaves unprocessed are unknown: counting
        without them lets the join in, the same direction as every other failure of a limit."""
        ids = [
            str(item["connectionId"])
            for item in query_all(
                self._table, self._user_query(user_id, projection=("connectionId",))
            )
            if "connectionId" in item and item["connectionId"] != skip
        ]
        rooms: set[str] = set()
        if not ids:
            return rooms
        now = self._table.now()
        for item in self._table.batch_get([keys.conn_key(c) for c in ids], ("rooms", TTL)):
            if live(item, now):
                rooms.update(item.get("rooms", set()))
        return rooms

    # --- frames per connection ------------------------------------------------------------

    def take_frame(self, connection_id: str) -> Verdict:
        """Take one token from the connection's bucket: one conditional UpdateItem when this
        container guessed the branch, two when not (three only when another frame refilled
        the bucket between them). The verdict carries the connection item. An unknown
        connection passes (the dispatch answers ``not_found``); a DynamoDB error passes too,
        with ``error`` set and nothing known of the connection."""
        now = self._now_us()
        seen = self._seen.get(connection_id)
        drained = seen is not None and seen > now  # rateTat only grows: still past now
        try:
            for _ in range(3):
                if drained:
                    new, old = self._advance(connection_id, now)
                else:
                    new, old = self._refill(connection_id, now)
                if new is not None:  # a token taken: the item as the write left it
                    self._remember(connection_id, _tat(new))
                    return Verdict(True, known=True, connection=new)
                if not old:  # no such connection
                    self._seen.pop(connection_id, None)
                    return Verdict(True, known=True)
                tat = _tat(old)
                self._remember(connection_id, tat)
                if tat > now + self._tau:
                    break  # over the limit
                if drained == (tat > now):
                    # The item failed the condition of the branch it calls for: no such item
                    # reaches here (the condition was evaluated on it); fail open, as above.
                    return Verdict(True, known=True, connection=old)
                drained = tat > now
            else:
                return Verdict(True, known=True, connection=old)  # raced thrice: let it go
        except (ClientError, BotoCoreError) as exc:
            return Verdict(True, error=error_code(exc))
        retry = max(1, math.ceil((tat - self._tau - now) / 1000))
        return Verdict(False, retry_after_ms=retry, known=True, connection=old)

    def _remember(self, connection_id: str, tat: int) -> None:
        if len(self._seen) >= _SEEN_MAX and connection_id not in self._seen:
            self._seen.clear()  # a guess lost is one extra write at worst
        self._seen[connection_id] = tat

    def _refill(self, connection_id: str, now: int) -> tuple[Item | None, Item | None]:
        """The full-bucket branch (``rateTat <= now``)."""
        return self._conditional(
            connection_id,
            Update(set={"rateTat": now + self._interval}),
            Attr("PK").exists() & (Attr("rateTat").not_exists() | Attr("rateTat").lte(now)),
        )

    def _advance(self, connection_id: str, now: int) -> tuple[Item | None, Item | None]:
        """The partly-drained branch (``now < rateTat <= now + tau``): ADD to a number that
        exists (the condition says so) is ``rateTat = rateTat + interval``."""
        return self._conditional(
            connection_id,
            Update(add={"rateTat": self._interval}),
            Attr("PK").exists() & Attr("rateTat").gt(now) & Attr("rateTat").lte(now + self._tau),
        )

    def _conditional(
        self, connection_id: str, update: Update, condition: Any
    ) -> tuple[Item | None, Item | None]:
        """(the item after the update, None) when it applied; (None, the item as it was, or
        {} when there is none) when its condition failed."""
        try:
            # The bucket lives on the connection item, so it goes when the connection does.
            new = self._table.update(
                keys.conn_key(connection_id),
                update,
                condition=condition,
                returns="ALL_NEW",
                old_on_failure=True,
            )
        except ConditionFailed as failed:
            return None, failed.old or {}
        return new or {}, None


def _tat(item: Item) -> int:
    """``rateTat`` of a connection item; an item without one (or no item) is a full bucket."""
    return int(item.get("rateTat", 0))
