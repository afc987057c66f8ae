"""The DynamoDB connection registry: connections, their users and their room memberships.

One table (``CONNECTIONS_TABLE``, defined once in schema.json):

- connection ``PK=CONN#<id> SK=CONN`` with connectionId, connectedAt (ms), ttl, userId, role,
  tokenExp (the connect token's exp, epoch seconds; absent without a token), endpoint, rooms (a string set) and two index keys: ``GSI1PK=USER#<userId>`` (a user's
  connections) and ``GSI2PK=ALL#<shard>`` (every connection, sharded so that neither the writes
  nor a broadcast's reads hit one hot partition);
- membership ``PK=ROOM#<room> SK=CONN#<id>`` with connectionId, userId, ttl, endpoint.

No send path scans: a user is a Query on GSI1, a room a Query on its partition, everyone a
Query per ALL shard. DynamoDB's TTL deletes expired items only eventually, so every read also
filters ``ttl > now``, and every Query pages through ``LastEvaluatedKey``.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ThreadPoolExecutor,
    as_completed,
    wait,
)
from dataclasses import dataclass, field, replace
from typing import Any

from boto3.dynamodb.conditions import Attr

from chalicelib import keys
from chalicelib.access import grant_to_item, grants_from_item
from chalicelib.capabilities import NONE, Capabilities, ClaimError, parse_claim
from chalicelib.keys import TTL, shard_of
from chalicelib.permissions import Grant
from chalicelib.table import (
    Change,
    ConditionFailed,
    Delete,
    Item,
    ItemKey,
    Put,
    Query,
    Table,
    TransactionCancelled,
    TxOp,
    UnprocessedItems,
    Update,
    live,
)

# ``quiet``: a member who may not see the room's presence (permissions: presence skips it).
_TARGET_PROJECTION = ("connectionId", "userId", "endpoint", TTL, "quiet")

__all__ = [
    "TTL",
    "ConnectionRecord",
    "DuplicateConnection",
    "ItemConflict",
    "NotConnected",
    "QuerySpec",
    "Registry",
    "RegistryError",
    "Removed",
    "RoomLimitReached",
    "Sweep",
    "Target",
    "record_of",
    "shard_of",
]


class RegistryError(Exception):
    """DynamoDB refused or failed a registry operation."""


class DuplicateConnection(RegistryError):
    """A connection with this id is already registered."""


class NotConnected(RegistryError):
    """The connection is not (or no longer) registered."""


class RoomLimitReached(RegistryError):
    """A join refused by the connection item's condition: it already holds ``limit`` rooms."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} rooms per connection")
        self.limit = limit


class ItemConflict(RegistryError):
    """A join or leave was cancelled by one of the caller's own items (``also``): its
    condition failed, or another transaction was writing it. Nothing was written."""


@dataclass(frozen=True)
class Removed:
    """What ``remove_connection`` deleted: the connection's user and every room it was in."""

    user_id: str
    rooms: frozenset[str]
    # When it connected (epoch ms; 0 if unknown): a "Connection Closed" event's duration.
    connected_at: int = 0
    # Who closed it, when a kick or an expiry said so before closing (``mark_closing``).
    closed_by: str | None = None


@dataclass(frozen=True)
class ConnectionRecord:
    connection_id: str
    user_id: str
    connected_at: int
    ttl: int
    endpoint: str | None = None
    role: str | None = None
    rooms: frozenset[str] = frozenset()
    # The connect token's exp (epoch seconds): the rights it granted end then. None: no token.
    token_expires_at: int | None = None
    # The identity's info (auth.Identity.info): shown in presence enters and members answers.
    info: dict[str, Any] | None = None
    # Permissions (access.py): the token's rooms claim and its claims for an authorizer, the
    # authorizer's cached answers by room, and rooms whose presence enter is still to announce
    # (autoJoin at $connect).
    capabilities: Capabilities = NONE
    claims: Mapping[str, Any] = field(default_factory=dict)
    grants: Mapping[str, Grant] = field(default_factory=dict)
    pending_enters: frozenset[str] = frozenset()

    def token_expired(self, now: float) -> bool:
        return self.token_expires_at is not None and self.token_expires_at <= now

    def grant(self, room: str) -> Grant | None:
        return self.grants.get(room)


@dataclass(frozen=True)
class Target:
    """A connection to deliver to, as a send path reads it from an index."""

    connection_id: str
    user_id: str | None = None
    endpoint: str | None = None
    quiet: bool = False  # a member who does not receive the room's presence events


@dataclass(frozen=True)
class QuerySpec:
    """One registry Query of an audience and where to resume it: the ``partition`` of the
    table or of ``index``, its sort keys narrowed to ``prefix``, and ``start``, the key of the
    last item read (None: from the beginning). JSON-safe both ways (``as_dict``/``from_dict``),
    so a fan-out's continuation can carry it on SQS."""

    partition: str
    index: str | None = None
    prefix: str | None = None
    start: ItemKey | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pk": self.partition}
        if self.index:
            out["index"] = self.index
        if self.prefix:
            out["prefix"] = self.prefix
        if self.start:
            out["start"] = self.start
        return out

    @classmethod
    def from_dict(cls, data: Any) -> QuerySpec:
        """Raises ValueError on anything but what ``as_dict`` writes."""
        if not isinstance(data, dict) or not isinstance(data.get("pk"), str):
            raise ValueError("a query needs a partition")
        index, prefix, start = data.get("index"), data.get("prefix"), data.get("start")
        if index is not None and index not in keys.INDEXES:
            raise ValueError(f"unknown index {index!r}")
        if prefix is not None and not isinstance(prefix, str):
            raise ValueError("a query prefix must be a string")
        if start is not None and not (
            isinstance(start, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in start.items())
        ):
            raise ValueError("a query start must be a key of string attributes")
        return cls(data["pk"], index, prefix, start)

    def query(self, page_size: int | None) -> Query:
        """The table Query of this spec's next page: live items, as a send path reads them."""
        return Query(
            self.partition,
            index=self.index,
            sk_prefix=self.prefix,
            live=True,
            projection=_TARGET_PROJECTION,
            limit=page_size,
            start=self.start,
        )


class Sweep:
    """The targets of some registry Queries, read page by page, that can say where it stopped.

    Queries run side by side in the registry's shard pool, one page each in flight, and pages
    are yielded as they arrive (the first posts go out before the slowest shard is read). When
    the consumer stops iterating (a fan-out's deadline), ``rest()`` returns exactly what was
    not yielded: the targets read but not handed out, and each unfinished Query with the
    ``ExclusiveStartKey`` of its next unread page (a page in flight counts as unread). Nothing is lost and
    nothing is listed twice (a connection is in one shard, once per Query).
    """

    def __init__(
        self,
        pool: Executor,
        page: Callable[[QuerySpec], tuple[list[Target], ItemKey | None]],
        queries: list[QuerySpec],
    ) -> None:
        self._pool = pool
        self._page = page
        self._queries = list(queries)
        self._open = [True] * len(self._queries)
        self._buffer: deque[Target] = deque()
        self._inflight: dict[Future[tuple[list[Target], ItemKey | None]], int] = {}
        self._started = False

    @property
    def queries(self) -> list[QuerySpec]:
        return list(self._queries)

    def start(self) -> None:
        """Send the first page of every Query now (idempotent): a send starts reading its
        audience while it writes the log, so the two round trips overlap."""
        self._start()

    def __iter__(self) -> Iterator[Target]:
        self._start()
        while self._buffer or self._inflight:
            while self._buffer:
                yield self._buffer.popleft()
            if self._inflight:
                done, _ = wait(list(self._inflight), return_when=FIRST_COMPLETED)
                for future in done:
                    self._land(future)

    def _start(self) -> None:
        if not self._started:
            self._started = True
            for i in range(len(self._queries)):
                self._fetch(i)

    def _fetch(self, i: int) -> None:
        future = self._pool.submit(self._page, self._queries[i])
        self._inflight[future] = i

    def _land(self, future: Future[tuple[list[Target], ItemKey | None]]) -> None:
        i = self._inflight.pop(future)
        items, last = future.result()
        self._buffer.extend(items)
        self._queries[i] = replace(self._queries[i], start=last)
        self._open[i] = bool(last)
        if last:
            self._fetch(i)

    def rest(self) -> tuple[list[Target], list[QuerySpec]]:
        """What was not yielded: targets already read, and the Queries still to page. A page
        still in flight is not waited for: its Query resumes from the key that page started
        at (the deadline has passed; its result is dropped)."""
        unread = [q for q, live in zip(self._queries, self._open, strict=True) if live]
        targets = list(self._buffer)
        self._buffer.clear()
        self._inflight.clear()
        self._open = [False] * len(self._queries)
        return targets, unread


def record_of(connection_id: str, item: Item | None, now: float) -> ConnectionRecord | None:
    """The live connection a connection item describes (None: no item, or past its ttl).
    Any read or write that returns the item (a GetItem, or the rate limit's UpdateItem with
    ``ReturnValues=ALL_NEW``) gives the same record."""
    if not item or not live(item, now):
        return None
    return ConnectionRecord(
        connection_id=str(item.get("connectionId", connection_id)),
        user_id=str(item.get("userId", "")),
        connected_at=int(item.get("connectedAt", 0)),
        ttl=int(item.get(TTL, 0)),
        endpoint=item.get("endpoint"),
        role=item.get("role"),
        rooms=frozenset(item.get("rooms", set())),
        token_expires_at=int(item["tokenExp"]) if item.get("tokenExp") is not None else None,
        info=parse_info(item.get("info")),
        **_permission_fields(item),
    )


def _room_condition(room: str, max_rooms: int | None) -> Any:
    """The connection item's condition in a join: registered, and under the rooms cap."""
    registered = Attr("PK").exists()
    if max_rooms is None:
        return registered
    rooms = Attr("rooms")
    return registered & (rooms.not_exists() | rooms.size().lt(max_rooms) | rooms.contains(room))


# How many removed connection ids a container remembers (about 100 bytes each).
REMEMBERED_REMOVALS = 10_000


class RecentIds:
    """A set of at most ``size`` ids that forgets the oldest first; thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: object) -> bool:
        return key in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, key: str) -> None:
        with self._lock:
            self._ids[key] = None
            self._ids.move_to_end(key)
            while len(self._ids) > self._size:
                self._ids.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._ids.pop(key, None)


class Registry:
    """The connection registry over the table layer."""

    def __init__(self, table: Table, ttl_seconds: int = 7500, all_shards: int = 8) -> None:
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._shards = all_shards
        # Items per Query page of a registry read (DynamoDB's Limit); None: 1 MB pages.
        self.page_size: int | None = None
        # Shard queries of a broadcast run side by side; a pool of their own so they never
        # wait behind the posts of the fan-out pool.
        self._shard_pool = ThreadPoolExecutor(
            max_workers=min(all_shards, 16), thread_name_prefix="registry-shard"
        )
        # Connections this container has seen removed (see ``remove_connection``).
        self._removed = RecentIds(REMEMBERED_REMOVALS)

    # --- writes ---------------------------------------------------------------------------

    def expiry_for(self, connected_at_ms: int) -> int:
        """The ttl of a connection made at ``connected_at_ms``: computed per connection."""
        return connected_at_ms // 1000 + self._ttl_seconds

    def register(
        self,
        connection_id: str,
        user_id: str,
        connected_at_ms: int,
        endpoint: str | None = None,
        role: str | None = None,
        token_expires_at: int | None = None,
        slot: Callable[[int], TxOp] | None = None,
        slot_number: int | None = None,
        info: dict[str, Any] | None = None,
        capabilities: Capabilities = NONE,
        claims: Mapping[str, Any] | None = None,
    ) -> ConnectionRecord:
        """Write the connection item (on condition no such id exists). With ``slot`` (the
        connection's ttl -> the transaction item claiming its per-user slot, limits.py), the
        two are written in one transaction: raises ``ItemConflict`` when the slot was taken
        meanwhile, ``DuplicateConnection`` when the id is."""
        ttl = self.expiry_for(connected_at_ms)
        item: Item = {
            **keys.conn_key(connection_id),
            "connectionId": connection_id,
            "connectedAt": connected_at_ms,
            TTL: ttl,
            "userId": user_id,
            **keys.conn_index_keys(connection_id, user_id, shard_of(connection_id, self._shards)),
        }
        if endpoint:
            item["endpoint"] = endpoint
        if role:
            item["role"] = role
        if token_expires_at is not None:
            item["tokenExp"] = token_expires_at
        if slot_number is not None:
            item["slot"] = slot_number  # freed with the connection (remove_connection)
        if info is not None:
            # JSON text, not a map: the claim may hold floats, which TypeSerializer refuses.
            item["info"] = info_json(info)
        item.update(_permission_attributes(capabilities, claims))
        self._removed.discard(connection_id)  # an id is never reused, but a test may reuse one
        try:
            if slot is None:
                self._table.put(item, condition=Attr("PK").not_exists())
            else:
                self._register_with_slot(item, slot(ttl))
        except ConditionFailed:
            if not self._is_own_registration(connection_id, user_id, connected_at_ms):
                raise DuplicateConnection(connection_id) from None
            # botocore retried a put whose first attempt was applied but answered too late
            # (a read timeout): the item is this very registration, so $connect succeeds.
        return ConnectionRecord(
            connection_id,
            user_id,
            connected_at_ms,
            ttl,
            endpoint,
            role,
            token_expires_at=token_expires_at,
            info=info,
            capabilities=capabilities,
            claims=dict(claims or {}),
        )

    def mark_closing(self, connection_id: str, closed_by: str) -> None:
        """Say on the connection item who is closing it (a kick, an expiry) before the socket
        is closed: whichever removal then runs (the closer's own, or the ``$disconnect`` the
        close causes) reports that cause. Best effort: a connection already gone is left."""
        try:
            self._update_connection(connection_id, Update(set={"closedBy": closed_by}))
        except NotConnected:
            pass

    # --- permissions (access.py) ---------------------------------------------------------

    def set_identity(
        self,
        connection_id: str,
        role: str | None,
        token_expires_at: int | None,
        capabilities: Capabilities,
        claims: Mapping[str, Any],
    ) -> None:
        """A re-authorized connection's new token: role, expiry, capabilities and claims (one
        UpdateItem; NotConnected when the connection is gone). A missing role or expiry is
        stored as null, which reads back as none."""
        values: dict[str, Any] = {
            "role": role,
            "tokenExp": token_expires_at,
            "caps": None,
            "claims": None,
            **_permission_attributes(capabilities, claims),
        }
        self._update_connection(connection_id, Update(set=values))

    def set_grants(self, conn: ConnectionRecord, grants: Mapping[str, Grant]) -> None:
        """The authorizer's cached answers of a connection, by room (one UpdateItem). Written
        whole: two frames caching answers for two rooms at once may keep only one, which costs
        one more call of the function later, never a right."""
        now = self._table.now()
        kept = {room: grant_to_item(g) for room, g in grants.items() if g.fresh(now)}
        self._update_connection(conn.connection_id, Update(set={"grants": kept}))

    def set_grant(self, conn: ConnectionRecord, room: str, grant: Grant) -> None:
        self.set_grants(conn, {**conn.grants, room: grant})

    def drop_grant(self, conn: ConnectionRecord, room: str) -> None:
        self.set_grants(conn, {r: g for r, g in conn.grants.items() if r != room})

    def set_pending_enters(self, connection_id: str, rooms: Sequence[str]) -> None:
        """Rooms auto-joined at $connect whose presence enter the first frame announces."""
        if rooms:
            self._update_connection(connection_id, Update(add={"pendingEnters": set(rooms)}))

    def take_pending_enters(self, conn: ConnectionRecord) -> set[str]:
        """Remove and return the pending enters: of concurrent frames, one gets each room
        (the set shrinks under a condition that it still holds them)."""
        if not conn.pending_enters:
            return set()
        try:
            old = self._table.update(
                keys.conn_key(conn.connection_id),
                Update(delete={"pendingEnters": set(conn.pending_enters)}),
                condition=Attr("pendingEnters").exists(),
                returns="UPDATED_OLD",
            )
        except ConditionFailed:
            return set()
        return set((old or {}).get("pendingEnters", set())) & set(conn.pending_enters)

    def joined_after(self, room: str, connection_id: str) -> int:
        """Where a ``history: since joined`` member's history of ``room`` starts (the seq its
        membership item recorded at the join; 0 without one)."""
        item = self._table.get(keys.member_key(room, connection_id), projection=("after",))
        return int((item or {}).get("after") or 0)

    def _update_connection(self, connection_id: str, update: Update) -> None:
        try:
            self._table.update(keys.conn_key(connection_id), update, condition=Attr("PK").exists())
        except ConditionFailed:
            raise NotConnected(connection_id) from None

    def _register_with_slot(self, item: Item, slot: TxOp) -> None:
        try:
            self._table.transact([Put(item, Attr("PK").not_exists()), slot])
        except TransactionCancelled as exc:
            # Reasons item by item (TransactWriteItems, "CancellationReasons"): the connection
            # item first, the slot second.
            if exc.reasons and exc.reasons[0] == "ConditionalCheckFailed":
                raise ConditionFailed() from None
            raise ItemConflict(str(item["connectionId"])) from None

    def _is_own_registration(self, connection_id: str, user_id: str, connected_at_ms: int) -> bool:
        item = self._table.get(keys.conn_key(connection_id), consistent=True)
        return bool(
            item
            and item.get("userId") == user_id
            and int(item.get("connectedAt", 0)) == connected_at_ms
        )

    def join(
        self,
        conn: ConnectionRecord,
        room: str,
        also: Sequence[TxOp] = (),
        quiet: bool = False,
        after: int | None = None,
        max_rooms: int | None = None,
    ) -> None:
        """Add a membership item and record the room on the connection, atomically, together
        with the transaction items in ``also`` (presence keeps its per-user item there).
        ``quiet``: the member does not receive the room's presence events; ``after``: where
        its history starts (a ``history: since joined`` room).

        ``max_rooms``: the join commits only while the connection holds fewer rooms (or
        already holds this one), a condition on the connection item's ``size(rooms)`` in the
        same transaction, so parallel joins cannot overshoot the cap (DynamoDB serialises
        transactions on one item; a check before the write, as before, let 18 parallel joins
        make 63 rooms of 50). Raises ``RoomLimitReached``."""
        member: Item = {
            **keys.member_key(room, conn.connection_id),
            "connectionId": conn.connection_id,
            "userId": conn.user_id,
            TTL: conn.ttl,
        }
        if conn.endpoint:
            member["endpoint"] = conn.endpoint
        if quiet:
            member["quiet"] = True
        if after is not None:
            member["after"] = after
        try:
            self._table.transact(
                [
                    Put(member),
                    # No membership for a connection that disconnected meanwhile.
                    Change(
                        keys.conn_key(conn.connection_id),
                        Update(add={"rooms": {room}}),
                        _room_condition(room, max_rooms),
                    ),
                    *also,
                ]
            )
        except TransactionCancelled as exc:
            error = self._cancelled(exc, conn.connection_id)
            if isinstance(error, NotConnected) and max_rooms is not None:
                # Either condition of the connection item: which one, only a read can tell
                # (a transaction returns no item for a failed condition). Refusals only.
                item = self._table.get(
                    keys.conn_key(conn.connection_id), consistent=True, projection=("rooms",)
                )
                if item is not None and len(item.get("rooms", ())) >= max_rooms:
                    raise RoomLimitReached(max_rooms) from None
            raise error from None

    def leave(self, connection_id: str, room: str, also: Sequence[TxOp] = ()) -> None:
        try:
            self._table.transact(
                [
                    Delete(keys.member_key(room, connection_id)),
                    Change(
                        keys.conn_key(connection_id),
                        Update(delete={"rooms": {room}}),
                        Attr("PK").exists(),
                    ),
                    *also,
                ]
            )
        except TransactionCancelled as exc:
            raise self._cancelled(exc, connection_id) from None

    @staticmethod
    def _cancelled(exc: TransactionCancelled, connection_id: str) -> RegistryError:
        """Why a join or leave transaction was cancelled. Items 0 and 1 are the membership and
        the connection (its condition: still registered); the caller's own items follow.
        Reasons are listed item by item (TransactWriteItems API reference,
        "CancellationReasons"): a failed condition or a conflicting transaction on one of the
        caller's items is the caller's to handle; anything else means not connected."""
        codes = exc.reasons
        if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
            return NotConnected(connection_id)
        if any(c in ("ConditionalCheckFailed", "TransactionConflict") for c in codes):
            return ItemConflict(connection_id)
        return NotConnected(connection_id)

    def remove(self, connection_id: str) -> bool:
        """Delete a connection and all its memberships. Idempotent; True if it existed."""
        return self.remove_connection(connection_id) is not None

    def remove_connection(self, connection_id: str) -> Removed | None:
        """Delete a connection and all its memberships: its user and rooms, None if it was
        already gone.

        Memberships go first and the connection item last, read back as it is deleted: a
        join commits only while the connection item exists (its transaction's condition), so
        the rooms on the deleted item are every room it ever got, including one joined while
        this ran (reading the rooms and batch-deleting everything at once leaked that room's
        membership). If anything fails midway the connection item is still there, and the
        next removal (a 410 prune) finishes the job.

        A connection this container saw removed, or found already gone, is not read again:
        when a room's members all drop at once, every ``$disconnect``'s leave announcement
        finds the others gone (410) and would prune each of them, N² reads for N members (a
        half-open soak of 100 made 2,381 reads). Connection ids are never reused, so a
        removed one cannot come back.
        """
        if connection_id in self._removed:
            return None
        key = keys.conn_key(connection_id)
        item = self._table.get(
            key, consistent=True, projection=("rooms", "userId", "connectedAt", "closedBy")
        )
        if item is None:
            self._removed.add(connection_id)
            return None
        rooms = set(item.get("rooms", set()))
        self._delete_memberships(connection_id, rooms)
        old = self._table.delete(key, return_old=True)
        late = set(old.get("rooms", set())) - rooms if old else set()
        self._delete_memberships(connection_id, late)
        user_id = str((old or item).get("userId", ""))
        if old and "slot" in old:
            self._free_slot(user_id, int(old["slot"]), connection_id)
        self._removed.add(connection_id)
        return Removed(
            user_id,
            frozenset(rooms | late),
            int((old or item).get("connectedAt", 0) or 0),
            (old or item).get("closedBy"),
        )

    def _free_slot(self, user_id: str, slot: int, connection_id: str) -> None:
        """Delete the connection's per-user slot (limits.py) if it still holds it. Best
        effort: a slot left behind is reclaimed once its ttl passes, or sooner by a
        handshake that finds its holder gone."""
        try:
            self._table.delete(
                keys.slot_key(user_id, slot), condition=Attr("connectionId").eq(connection_id)
            )
        except Exception:  # noqa: BLE001 - see the docstring
            pass

    def _delete_memberships(self, connection_id: str, rooms: set[str]) -> None:
        try:
            self._table.batch_delete([keys.member_key(r, connection_id) for r in sorted(rooms)])
        except UnprocessedItems as exc:
            raise RegistryError(str(exc)) from None

    # --- reads ----------------------------------------------------------------------------

    def get(self, connection_id: str) -> ConnectionRecord | None:
        """The live connection, or None if unknown or expired."""
        return record_of(connection_id, self._table.get(keys.conn_key(connection_id)), self.now())

    def user_connections(self, user_id: str) -> Iterator[Target]:
        return self._targets(self.user_query(user_id))

    def room_members(self, room: str) -> Iterator[Target]:
        return self._targets(self.room_query(room))

    def all_connections(self) -> Iterator[Target]:
        """Every live connection: one paged Query per ALL shard, shards read side by side and
        yielded as each finishes, so a fan-out can start posting before the slowest shard."""
        futures = [
            self._shard_pool.submit(lambda spec: list(self._targets(spec)), spec)
            for spec in self.all_queries()
        ]
        for future in as_completed(futures):
            yield from future.result()

    def live_targets(self, connection_ids: Sequence[str]) -> list[Target]:
        """The live connections among ``connection_ids``, in that order, each with the
        endpoint stored on its item at ``$connect`` (a continuation job names connections,
        never endpoints). Unknown and expired ids are left out; keys DynamoDB still leaves
        unprocessed after the table layer's retries raise ``RegistryError`` (an unread
        connection must not pass for a closed one)."""
        ids = list(dict.fromkeys(connection_ids))
        try:
            items = self._table.batch_get(
                [keys.conn_key(cid) for cid in ids], _TARGET_PROJECTION, complete=True
            )
        except UnprocessedItems as exc:
            raise RegistryError(f"connection reads: {exc}") from None
        now = self._table.now()
        found = {
            str(item["connectionId"]): Target(
                str(item["connectionId"]), item.get("userId"), item.get("endpoint")
            )
            for item in items
            if item.get("connectionId") and live(item, now)
        }
        return [found[cid] for cid in ids if cid in found]

    # --- resumable audiences (a fan-out that continues on SQS) --------------------------------

    def user_query(self, user_id: str) -> QuerySpec:
        return QuerySpec(keys.user_partition(user_id), keys.USERS_INDEX)

    def room_query(self, room: str) -> QuerySpec:
        return QuerySpec(keys.room_partition(room), prefix=keys.CONN_PREFIX)

    def all_queries(self) -> list[QuerySpec]:
        return [QuerySpec(keys.all_partition(n), keys.ALL_INDEX) for n in range(self._shards)]

    def sweep(self, queries: list[QuerySpec]) -> Sweep:
        return Sweep(self._shard_pool, self._page, queries)

    def _page(self, spec: QuerySpec) -> tuple[list[Target], ItemKey | None]:
        """One page of ``spec``: its live targets and the ``LastEvaluatedKey`` (None: done)."""
        page = self._table.query(spec.query(self.page_size))
        targets = [
            Target(
                str(item["connectionId"]),
                item.get("userId"),
                item.get("endpoint"),
                bool(item.get("quiet", False)),
            )
            for item in page.items
            if item.get("connectionId")
        ]
        return targets, page.last

    def _targets(self, spec: QuerySpec) -> Iterator[Target]:
        """Every live target of ``spec``, read page by page as the caller iterates."""
        while True:
            targets, last = self._page(spec)
            yield from targets
            if not last:
                return
            spec = replace(spec, start=last)

    @property
    def table(self) -> Table:
        """The table layer the registry writes to (the other services share it)."""
        return self._table

    @property
    def ttl_seconds(self) -> int:
        return self._ttl_seconds

    def now(self) -> float:
        """The table's clock (epoch seconds): what ttl and token expiry are compared with."""
        return self._table.now()


def info_json(info: dict[str, Any]) -> str:
    """Member info as stored: compact JSON text."""
    return json.dumps(info, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def parse_info(raw: Any) -> dict[str, Any] | None:
    """Stored member info back as an object; None when absent."""
    if not isinstance(raw, str) or not raw:
        return None
    value = json.loads(raw)
    return value if isinstance(value, dict) else None


def _permission_attributes(
    capabilities: Capabilities, claims: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The token's rooms claim and claims as the connection item keeps them: JSON strings
    (claims are any JSON; DynamoDB numbers would not keep floats as they are)."""
    out: dict[str, Any] = {}
    if capabilities:
        out["caps"] = json.dumps(capabilities.as_claim(), separators=(",", ":"))
    if claims:
        out["claims"] = json.dumps(dict(claims), separators=(",", ":"), default=str)
    return out


def _permission_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """ConnectionRecord's permission fields from a connection item; what does not decode is
    left out (the connection then holds no capability: it fails closed)."""
    out: dict[str, Any] = {}
    try:
        out["capabilities"] = parse_claim(json.loads(item.get("caps") or "null"))
        claims = json.loads(item.get("claims") or "{}")
        out["claims"] = claims if isinstance(claims, dict) else {}
    except (ValueError, ClaimError):
        pass
    out["grants"] = grants_from_item(item.get("grants"))
    out["pending_enters"] = frozenset(item.get("pendingEnters") or ())
    return out
