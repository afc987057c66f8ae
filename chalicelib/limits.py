"""Abuse limits that hold across Lambda containers: their state lives in DynamoDB.

Every frame is its own Lambda invocation and any number of containers run side by side, so a
limit kept in a process would bind one container, not the user. The limits:

- ``MAX_CONNECTIONS_PER_USER``: a user has that many slot items ``PK=USER#<id> SK=SLOT#<n>``.
  On ``$connect`` the user's slots are read (one Query of at most the cap's items) and the
  connection claims a free one in the transaction that writes its item (a conditional Put:
  no such item, or the item as read when it is past its ttl or its holder is gone), so two
  handshakes can never hold one slot: the cap holds exactly however many run at once (80
  parallel handshakes: 10 in, where a count let 50 in). A slot expires with its connection's
  ttl and is deleted when the connection is removed (``$disconnect``, 410, kick); one whose
  connection vanished without freeing it is reclaimed after ``_SLOT_GRACE``. At the cap the
  handshake is refused with 429.
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

  A ``leave`` takes ``LEAVE_FRAME_COST`` tokens (a cost ``c`` conforms while ``max(rateTat,
  now) + c`` intervals ``<= now + tau +`` one interval): each join/leave toggle fans a presence
  event out to the whole room and logs it in the room's stream, so toggling is made about
  ``c + 1`` times dearer than a message, while a reconnect's rejoins (joins, no leaves) stay
  at one token each. Still one or two conditional UpdateItems, no extra call.
- ``REPLAY_RATE`` / ``REPLAY_BURST``: a per-user bucket of messages replayed by ``resume`` and
  ``history`` (the same GCRA, attribute ``replayTat`` of the user's limits item ``PK=USER#<id>
  SK=LIMITS``, created by the first reservation, with a ttl): a frame reserves what it may
  replay (``REPLAY_MAX_MESSAGES``, a history page its ``limit``) before it reads the log, with
  one or two conditional UpdateItems, and gives back what it did not use with one UpdateItem
  (none when it used all). Over budget it is refused at once (``rate_limited`` with
  ``retryAfterMs``), never queued: a frame holds its Lambda while it replays, so the review's
  64 resume frames of 500 messages each held every handler for 22 s.

Why slots rather than a per-user counter or a count: ``$disconnect`` is best-effort (API
Gateway may never deliver it), so a counter decremented there would leak and lock the user out
until someone repaired it; a slot is an item with the connection's own ttl, so a lost
``$disconnect`` frees it when the connection item expires, as the old count of live items did.
A count (the GSI1 Query this replaced) raced: handshakes of one user that ran at the same
moment all passed it, and GSI1 is eventually consistent. The per-user rooms cap keeps that
kind of race (two joins of one user at once on different connections add at most one room
each beyond the cap). The rooms cap of one connection (``MAX_ROOMS_PER_CONNECTION``) has none:
it is a condition on the connection item's ``size(rooms)`` inside the join's own transaction
(registry.py). Cost: a handshake is still two calls (the slot Query, then a TransactWriteItems
of the connection and its slot: 4 WCU where the plain Put was 1); a removal adds one DeleteItem.

The connection cap and the rate limit fail open: if DynamoDB cannot answer the check, the
handshake or frame goes on (and meets the same DynamoDB in its own work); the event log says
so. A join whose rooms cannot be read fails like any join DynamoDB refuses (nothing joined).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import keys, protocol
from chalicelib.aws_errors import error_code
from chalicelib.config import Settings
from chalicelib.keys import TTL
from chalicelib.registry import ConnectionRecord, Registry
from chalicelib.table import (
    ConditionFailed,
    Item,
    ItemKey,
    Put,
    Query,
    Table,
    TxOp,
    Update,
    live,
    query_all,
)

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
    # What ran out, for the error frame's message.
    what: str = "too many frames on this connection"
    # What the bucket's write says of its item: ``known`` is True when DynamoDB answered for
    # it, which is then ``connection`` (the item as the write left it, or as it was on a
    # refusal; None: no such item).
    known: bool = False
    connection: Item | None = None

    def frame(self, ref: protocol.Ref) -> dict[str, Any]:
        """The ``rate_limited`` error frame for a refused frame."""
        return {
            **protocol.error_frame(
                "rate_limited",
                f"{self.what}; nothing was done, retry in {self.retry_after_ms} ms",
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
        # The frame bucket lives on the connection item, so it goes when the connection does.
        self._frames = Bucket.of("rateTat", settings.message_rate, settings.message_burst)
        self._replay = Bucket.of(
            "replayTat", settings.replay_rate, settings.replay_burst, create=True
        )
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

    @staticmethod
    def _user_query(user_id: str, **extra: Any) -> Query:
        """A Query of the user's live connections on GSI1 (the registry's users index)."""
        return Query(keys.user_partition(user_id), index=keys.USERS_INDEX, live=True, **extra)

    # --- connection slots: the cap under parallel handshakes ---------------------------------

    def slot_claims(self, user_id: str) -> list[SlotClaim]:
        """The slots a new connection of ``user_id`` may try to claim, best first: never
        held, then held past their ttl, then held by a connection whose item is gone
        (removed without freeing its slot) for longer than ``_SLOT_GRACE``. One Query of the
        user's slot items (at most ``max_connections``, a few bytes each); a BatchGetItem
        of the holders only when every slot is held. Empty: the user is at the cap. Raises
        botocore's errors (the caller fails open)."""
        now = self._table.now()
        held: dict[int, Item] = {}
        query = Query(keys.user_partition(user_id), sk_prefix=keys.SLOT_PREFIX)
        for item in query_all(self._table, query):
            slot = _slot_number(item)
            if slot is not None and slot < self.max_connections:
                held[slot] = item
        free = _free_slots(self.max_connections, held)
        claims = [SlotClaim(user_id, n) for n in free]
        claims += [
            SlotClaim(user_id, n, expired_at=int(item.get(TTL, 0)))
            for n, item in held.items()
            if not live(item, now)
        ]
        if claims:
            return claims
        holders = {str(item.get("connectionId", "")): n for n, item in held.items()}
        found = {
            str(item.get("connectionId"))
            for item in self._table.batch_get(
                [keys.conn_key(c) for c in holders if c], ("connectionId", TTL)
            )
            if live(item, now)
        }
        stale_before = (now - _SLOT_GRACE) * 1000
        return [
            SlotClaim(user_id, n, holder=cid)
            for cid, n in holders.items()
            if cid not in found and int(held[n].get("claimedAt", 0)) < stale_before
        ]

    @property
    def too_many_connections(self) -> str:
        return f"too many connections for this user (limit {self.max_connections})"

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

    def take_frame(self, connection_id: str, cost: int = 1) -> Verdict:
        """Take ``cost`` tokens (a ``leave`` takes ``LEAVE_FRAME_COST``) from the connection's
        bucket: one conditional UpdateItem when this container guessed the branch, two when
        not. The verdict carries the connection item (``known``, ``connection``). An unknown
        connection passes (the dispatch answers ``not_found``); a DynamoDB error passes too,
        with ``error`` set and nothing known of the connection."""
        now = self._now_us()
        seen = self._seen.get(connection_id)
        verdict = self._frames.take(
            self._table,
            keys.conn_key(connection_id),
            cost,
            now,
            drained=seen is not None and seen > now,  # rateTat only grows: still past now
        )
        if verdict.known:
            item = verdict.connection
            self._remember(connection_id, None if item is None else _tat(item, "rateTat"))
        return verdict

    def _remember(self, connection_id: str, tat: int | None) -> None:
        if tat is None:
            self._seen.pop(connection_id, None)  # no such connection
            return
        if len(self._seen) >= _SEEN_MAX and connection_id not in self._seen:
            self._seen.clear()  # a guess lost is one extra write at worst
        self._seen[connection_id] = tat

    # --- replay per user ------------------------------------------------------------------

    def take_replay(self, user_id: str, messages: int) -> Verdict:
        """Reserve ``messages`` of the user's replay budget before a ``resume`` or
        ``history`` reads the log (at most two conditional UpdateItems on the user's limits
        item, created on first use); ``refund_replay`` returns what the frame did not use."""
        verdict = self._replay.take(
            self._table,
            keys.user_limits_key(user_id),
            messages,
            self._now_us(),
            also={TTL: int(self._table.now()) + _USER_ITEM_TTL},
        )
        if verdict.allowed:  # the user's limits item is nobody's sender: not passed on
            return Verdict(True, error=verdict.error)
        return Verdict(False, verdict.retry_after_ms, what="replay budget of this user spent")

    def refund_replay(self, user_id: str, reserved: int, used: int) -> None:
        """Give back what a frame reserved (``take_replay``) but did not replay: one
        UpdateItem (none when it used all). A reservation over the burst was charged the
        burst only, so that is what the refund starts from. Best effort: a refund lost to a
        DynamoDB error only makes the budget stricter."""
        unused = min(reserved, self._replay.burst) - used
        if unused > 0:
            self._replay.refund(self._table, keys.user_limits_key(user_id), unused)


# At most this many free slots are offered to one handshake: a cap of 100,000 made every
# $connect build and shuffle 100,000 claims (~200 ms: 60 handshakes at once took 12.6 s on
# the local stack, 0.66 s before slots). Under a large cap a handshake's random picks rarely
# meet another's; under a small one every free slot is offered, as before.
_MAX_OFFERED = 32


def _free_slots(cap: int, held: Mapping[int, Item]) -> list[int]:
    """Free slot numbers below ``cap`` in random order (parallel handshakes of one user spread
    over them): all of them when there are at most ``_MAX_OFFERED``, else that many distinct
    random picks (rejection sampling while most are free; the few that are, otherwise)."""
    free_count = cap - len(held)
    if free_count <= _MAX_OFFERED or free_count < cap // 2:
        free = [n for n in range(cap) if n not in held]
        random.shuffle(free)
        return free[:_MAX_OFFERED]
    picks: dict[int, None] = {}
    while len(picks) < _MAX_OFFERED:
        n = random.randrange(cap)
        if n not in held:
            picks[n] = None
    return list(picks)


# A slot whose holder's connection item is missing is reclaimed only after this long: the
# holder claims its slot in the same transaction that writes its item, so a missing item
# this old is a removal that did not free the slot, not a read racing a registration.
_SLOT_GRACE = 30.0


@dataclass(frozen=True)
class SlotClaim:
    """One slot a new connection may take: ``PK=USER#<id> SK=SLOT#<n>``, written in the
    registration's transaction on a condition that makes two claims of one slot exclusive:
    no such item, or the item as it was read (past its ttl, or held by a vanished holder)."""

    user_id: str
    slot: int
    expired_at: int | None = None
    holder: str | None = None

    def op(self, connection_id: str, ttl: int, now_ms: int) -> TxOp:
        """The transaction item that claims the slot for ``connection_id`` until ``ttl`` (the
        connection's own ttl: a connection whose ``$disconnect`` is lost frees it then)."""
        if self.holder is not None:
            condition: Any = Attr("connectionId").eq(self.holder)
        elif self.expired_at is not None:
            condition = Attr(TTL).eq(self.expired_at)
        else:
            condition = Attr("PK").not_exists()
        item: Item = {
            **keys.slot_key(self.user_id, self.slot),
            "connectionId": connection_id,
            TTL: ttl,
            "claimedAt": now_ms,
        }
        return Put(item, condition)


def _slot_number(item: Item) -> int | None:
    sk = str(item.get("SK", ""))
    digits = sk[len(keys.SLOT_PREFIX) :]
    return int(digits) if sk.startswith(keys.SLOT_PREFIX) and digits.isdigit() else None


# How long a user's limits item outlives its last use (its bucket is full again long before).
_USER_ITEM_TTL = 86400


@dataclass(frozen=True)
class Bucket:
    """A token bucket kept as GCRA in one number attribute of one item (see the module
    docstring): ``interval`` microseconds per token, at most ``burst`` tokens. Taking ``cost``
    tokens at ``now`` conforms while ``max(tat, now) + cost * interval <= now + tau +
    interval`` and moves ``tat`` there; ``create``: whether a missing item may be created
    (a user's limits item) or means "let through" (a connection not registered)."""

    attribute: str
    interval: int
    burst: int
    create: bool = False

    @classmethod
    def of(cls, attribute: str, rate: float, burst: int, create: bool = False) -> Bucket:
        return cls(attribute, max(1, round(_MICROS / rate)), burst, create)

    @property
    def tau(self) -> int:
        return (self.burst - 1) * self.interval

    def take(
        self,
        table: Table,
        key: ItemKey,
        cost: int,
        now: int,
        also: Item | None = None,
        drained: bool = False,
    ) -> Verdict:
        """``drained``: try the part-drained branch first (the caller saw a ``tat`` past
        ``now``). Each write returns the item (as left on success, as it was on a refusal)."""
        # A cost over the burst could never conform: it takes the whole bucket instead.
        inc = max(1, min(cost, self.burst)) * self.interval
        ceiling = now + self.tau + self.interval - inc  # the latest tat that still conforms
        attr = Attr(self.attribute)
        exists = None if self.create else Attr("PK").exists()
        full = attr.not_exists() | attr.lte(now)
        partly = attr.gt(now) & attr.lte(ceiling)
        old: Item = {}
        try:
            for _ in range(3):  # a third write only when another frame moved tat between two
                if drained:
                    update = Update(set=dict(also or {}), add={self.attribute: inc})
                    condition = partly
                else:
                    update = Update(set={self.attribute: now + inc, **(also or {})})
                    condition = full
                if exists is not None:
                    condition = exists & condition
                new, old = self._conditional(table, key, update, condition)
                if new is not None:  # tokens taken: the item as the write left it
                    return Verdict(True, known=True, connection=new)
                if not old:
                    if self.create and drained:  # gone meanwhile: the full branch creates it
                        drained = False
                        continue
                    return Verdict(True, known=True)  # no such item (nothing to limit)
                tat = _tat(old, self.attribute)
                if tat > ceiling:
                    break  # over the limit
                if drained == (tat > now):
                    # The item failed the condition of the branch it calls for: no item
                    # reaches here (the condition was evaluated on it); fail open.
                    return Verdict(True, known=True, connection=old)
                drained = tat > now
            else:
                # Three writes raced: only a refund moves tat back (a replay budget), so the
                # take is refused, never let through uncharged; frames never get here.
                return Verdict(False, retry_after_ms=1, known=True, connection=old)
        except (ClientError, BotoCoreError) as exc:
            return Verdict(True, error=error_code(exc))
        # How long from the moment of refusal, not from ``now``: a frame whose writes waited
        # (other frames of the connection ran meanwhile) would otherwise overstate it.
        later = round(table.now() * _MICROS)
        wait = tat + inc - (later + self.tau + self.interval)
        return Verdict(
            False, retry_after_ms=max(1, math.ceil(wait / 1000)), known=True, connection=old
        )

    def refund(self, table: Table, key: ItemKey, cost: int) -> None:
        """Move ``tat`` back by ``cost`` tokens (an ADD of a negative number). A ``tat`` moved
        below now is a full bucket: the next take sets it from now, so a refund never makes
        the bucket hold more than ``burst``."""
        try:
            table.update(
                key,
                Update(add={self.attribute: -cost * self.interval}),
                condition=Attr(self.attribute).exists(),
            )
        except (ConditionFailed, ClientError, BotoCoreError):
            pass  # see Limits.refund_replay

    @staticmethod
    def _conditional(
        table: Table, key: ItemKey, update: Update, condition: Any
    ) -> tuple[Item | None, Item]:
        """(the item after the update, {}) when it applied; (None, the item as it was, or {}
        when there is none) when its condition failed."""
        try:
            new = table.update(
                key, update, condition=condition, returns="ALL_NEW", old_on_failure=True
            )
        except ConditionFailed as failed:
            return None, failed.old or {}
        return new or {}, {}


def _tat(item: Item, attribute: str) -> int:
    """The bucket's ``tat`` on an item; an item without one (or no item) is a full bucket."""
    return int(item.get(attribute, 0))
