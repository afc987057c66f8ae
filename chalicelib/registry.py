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

import time
import zlib
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, replace
from typing import Any

from chalicelib.schema import ttl_attribute

TTL = ttl_attribute()
_TARGET_PROJECTION = "connectionId, userId, endpoint, #ttl"


class RegistryError(Exception):
    """DynamoDB refused or failed a registry operation."""


class DuplicateConnection(RegistryError):
    """A connection with this id is already registered."""


class NotConnected(RegistryError):
    """The connection is not (or no longer) registered."""


class ItemConflict(RegistryError):
    """A join or leave was cancelled by one of the caller's own items (``also``): its
    condition failed, or another transaction was writing it. Nothing was written."""


@dataclass(frozen=True)
class Removed:
    """What ``remove_connection`` deleted: the connection's user and every room it was in."""

    user_id: str
    rooms: frozenset[str]


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

    def token_expired(self, now: float) -> bool:
        return self.token_expires_at is not None and self.token_expires_at <= now


@dataclass(frozen=True)
class Target:
    """A connection to deliver to, as a send path reads it from an index."""

    connection_id: str
    user_id: str | None = None
    endpoint: str | None = None


@dataclass(frozen=True)
class QuerySpec:
    """One registry Query of an audience and where to resume it: ``start`` is the
    ``ExclusiveStartKey`` of its next unread page (None: from the beginning). JSON-safe both
    ways (``as_dict``/``from_dict``), so a fan-out's continuation can carry it on SQS."""

    key_condition: str
    values: dict[str, Any]
    index: str | None = None
    start: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key_condition, "values": self.values}
        if self.index:
            out["index"] = self.index
        if self.start:
            out["start"] = self.start
        return out

    @classmethod
    def from_dict(cls, data: Any) -> QuerySpec:
        """Raises ValueError on anything but what ``as_dict`` writes."""
        if not isinstance(data, dict) or not isinstance(data.get("key"), str):
            raise ValueError("a query needs a key condition")
        values, index, start = data.get("values"), data.get("index"), data.get("start")
        if not isinstance(values, dict) or not all(isinstance(v, dict) for v in values.values()):
            raise ValueError("query values must be DynamoDB attribute values")
        if index is not None and index not in _INDEXES:
            raise ValueError(f"unknown index {index!r}")
        if start is not None and not isinstance(start, dict):
            raise ValueError("a query start must be a DynamoDB key")
        return cls(data["key"], values, index, start)


# The indexes an audience Query may name (schema.json); a continuation names nothing else.
_INDEXES = ("GSI1", "GSI2")


class Sweep:
    """The targets of some registry Queries, read page by page, that can say where it stopped.

    Queries run side by side in the registry's shard pool, one page each in flight, and pages
    are yielded as they arrive (the first posts go out before the slowest shard is read). When
    the consumer stops iterating (a fan-out's deadline), ``rest()`` returns exactly what was
    not yielded: the targets read but not handed out, and each unfinished Query with the
    ``ExclusiveStartKey`` of its next unread page (a page in flight counts as unread). Nothing is lost and
    nothing is listed twice (a connection is in one shard, once per Query).
    """

    def __init__(self, registry: Registry, queries: list[QuerySpec]) -> None:
        self._registry = registry
        self._queries = list(queries)
        self._open = [True] * len(self._queries)
        self._buffer: deque[Target] = deque()
        self._inflight: dict[Future[tuple[list[Target], Any]], int] = {}
        self._started = False

    @property
    def queries(self) -> list[QuerySpec]:
        return list(self._queries)

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
        future = self._registry._shard_pool.submit(self._registry._page, self._queries[i])
        self._inflight[future] = i

    def _land(self, future: Future[tuple[list[Target], Any]]) -> None:
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


def shard_of(connection_id: str, shards: int) -> int:
    return zlib.crc32(connection_id.encode("utf-8")) % shards


def _s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if value and "S" in value else None


def _n(item: dict[str, Any], name: str) -> int:
    value = item.get(name)
    return int(value["N"]) if value and "N" in value else 0


class Registry:
    """The connection registry over a low-level boto3 DynamoDB client.

    The low-level client, not the resource API: items are small and fixed, and skipping the
    resource layer's type (de)serialisation keeps fan-out reads cheap.
    """

    def __init__(
        self,
        client: Any,
        table_name: str,
        ttl_seconds: int = 7500,
        all_shards: int = 8,
        clock: Any = time.time,
    ) -> None:
        self._ddb = client
        self._table = table_name
        self._ttl_seconds = ttl_seconds
        self._shards = all_shards
        self._clock = clock
        # Items per Query page of a registry read (DynamoDB's Limit); None: 1 MB pages.
        self.page_size: int | None = None
        # Shard queries of a broadcast run side by side; a pool of their own so they never
        # wait behind the posts of the fan-out pool.
        self._shard_pool = ThreadPoolExecutor(
            max_workers=min(all_shards, 16), thread_name_prefix="registry-shard"
        )

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
    ) -> ConnectionRecord:
        ttl = self.expiry_for(connected_at_ms)
        item: dict[str, Any] = {
            "PK": {"S": f"CONN#{connection_id}"},
            "SK": {"S": "CONN"},
            "connectionId": {"S": connection_id},
            "connectedAt": {"N": str(connected_at_ms)},
            TTL: {"N": str(ttl)},
            "userId": {"S": user_id},
            "GSI1PK": {"S": f"USER#{user_id}"},
            "GSI1SK": {"S": f"CONN#{connection_id}"},
            "GSI2PK": {"S": f"ALL#{shard_of(connection_id, self._shards)}"},
            "GSI2SK": {"S": f"CONN#{connection_id}"},
        }
        if endpoint:
            item["endpoint"] = {"S": endpoint}
        if role:
            item["role"] = {"S": role}
        if token_expires_at is not None:
            item["tokenExp"] = {"N": str(token_expires_at)}
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(PK)",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
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
        )

    def _is_own_registration(self, connection_id: str, user_id: str, connected_at_ms: int) -> bool:
        item = self._ddb.get_item(
            TableName=self._table, Key=self._conn_key(connection_id), ConsistentRead=True
        ).get("Item")
        return bool(
            item and _s(item, "userId") == user_id and _n(item, "connectedAt") == connected_at_ms
        )

    def join(self, conn: ConnectionRecord, room: str, also: Sequence[dict[str, Any]] = ()) -> None:
        """Add a membership item and record the room on the connection, atomically, together
        with the transaction items in ``also`` (presence keeps its per-user item there)."""
        member: dict[str, Any] = {
            "PK": {"S": f"ROOM#{room}"},
            "SK": {"S": f"CONN#{conn.connection_id}"},
            "connectionId": {"S": conn.connection_id},
            "userId": {"S": conn.user_id},
            TTL: {"N": str(conn.ttl)},
        }
        if conn.endpoint:
            member["endpoint"] = {"S": conn.endpoint}
        try:
            self._ddb.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self._table, "Item": member}},
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": self._conn_key(conn.connection_id),
                            "UpdateExpression": "ADD rooms :r",
                            # No membership for a connection that disconnected meanwhile.
                            "ConditionExpression": "attribute_exists(PK)",
                            "ExpressionAttributeValues": {":r": {"SS": [room]}},
                        }
                    },
                    *also,
                ]
            )
        except self._ddb.exceptions.TransactionCanceledException as exc:
            raise self._cancelled(exc, conn.connection_id) from None

    def leave(self, connection_id: str, room: str, also: Sequence[dict[str, Any]] = ()) -> None:
        try:
            self._leave(connection_id, room, also)
        except self._ddb.exceptions.TransactionCanceledException as exc:
            raise self._cancelled(exc, connection_id) from None

    @staticmethod
    def _cancelled(exc: Exception, connection_id: str) -> RegistryError:
        """Why a join or leave transaction was cancelled. Items 0 and 1 are the membership and
        the connection (its condition: still registered); the caller's own items follow.
        Reasons are listed item by item (TransactWriteItems API reference,
        "CancellationReasons"): a failed condition or a conflicting transaction on one of the
        caller's items is the caller's to handle; anything else means not connected."""
        reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
        codes = [r.get("Code") for r in reasons]
        if len(codes) > 1 and codes[1] == "ConditionalCheckFailed":
            return NotConnected(connection_id)
        if any(c in ("ConditionalCheckFailed", "TransactionConflict") for c in codes):
            return ItemConflict(connection_id)
        return NotConnected(connection_id)

    def _leave(self, connection_id: str, room: str, also: Sequence[dict[str, Any]]) -> None:
        self._ddb.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": {"PK": {"S": f"ROOM#{room}"}, "SK": {"S": f"CONN#{connection_id}"}},
                    }
                },
                {
                    "Update": {
                        "TableName": self._table,
                        "Key": self._conn_key(connection_id),
                        "UpdateExpression": "DELETE rooms :r",
                        "ConditionExpression": "attribute_exists(PK)",
                        "ExpressionAttributeValues": {":r": {"SS": [room]}},
                    }
                },
                *also,
            ]
        )

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
        """
        response = self._ddb.get_item(
            TableName=self._table,
            Key=self._conn_key(connection_id),
            ProjectionExpression="rooms, userId",
            ConsistentRead=True,
        )
        item = response.get("Item")
        if item is None:
            return None
        rooms = set(item.get("rooms", {}).get("SS", []))
        self._delete_memberships(connection_id, rooms)
        old = self._ddb.delete_item(
            TableName=self._table, Key=self._conn_key(connection_id), ReturnValues="ALL_OLD"
        ).get("Attributes")
        late = set(old.get("rooms", {}).get("SS", [])) - rooms if old else set()
        self._delete_memberships(connection_id, late)
        return Removed(_s(old or item, "userId") or "", frozenset(rooms | late))

    def _delete_memberships(self, connection_id: str, rooms: set[str]) -> None:
        keys = [
            {"PK": {"S": f"ROOM#{room}"}, "SK": {"S": f"CONN#{connection_id}"}}
            for room in sorted(rooms)
        ]
        for start in range(0, len(keys), 25):
            self._batch_delete(keys[start : start + 25])

    def _batch_delete(self, keys: list[dict[str, Any]]) -> None:
        requests: list[dict[str, Any]] = [{"DeleteRequest": {"Key": k}} for k in keys]
        for attempt in range(8):
            response = self._ddb.batch_write_item(RequestItems={self._table: requests})
            requests = response.get("UnprocessedItems", {}).get(self._table, [])
            if not requests:
                return
            time.sleep(min(0.05 * 2**attempt, 1.0))
        raise RegistryError(f"{len(requests)} deletes left unprocessed after retries")

    # --- reads ----------------------------------------------------------------------------

    def get(self, connection_id: str) -> ConnectionRecord | None:
        """The live connection, or None if unknown or expired."""
        response = self._ddb.get_item(TableName=self._table, Key=self._conn_key(connection_id))
        item = response.get("Item")
        if not item or _n(item, TTL) <= self._now():
            return None
        return ConnectionRecord(
            connection_id=_s(item, "connectionId") or connection_id,
            user_id=_s(item, "userId") or "",
            connected_at=_n(item, "connectedAt"),
            ttl=_n(item, TTL),
            endpoint=_s(item, "endpoint"),
            role=_s(item, "role"),
            rooms=frozenset(item.get("rooms", {}).get("SS", [])),
            token_expires_at=_n(item, "tokenExp") if "tokenExp" in item else None,
        )

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
        """The live connections among ``connection_ids``, each with the endpoint stored on
        its item at ``$connect`` (a continuation job names connections, never endpoints).
        Unknown and expired ids are left out. BatchGetItem, 100 keys a request (its limit),
        retrying ``UnprocessedKeys``."""
        found: dict[str, Target] = {}
        ids = list(dict.fromkeys(connection_ids))
        for start in range(0, len(ids), 100):
            keys = [self._conn_key(cid) for cid in ids[start : start + 100]]
            request: dict[str, Any] = {
                self._table: {
                    "Keys": keys,
                    "ProjectionExpression": _TARGET_PROJECTION,
                    "ExpressionAttributeNames": {"#ttl": TTL},
                }
            }
            for attempt in range(8):
                response = self._ddb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    cid = _s(item, "connectionId")
                    if cid and _n(item, TTL) > self._now():
                        found[cid] = Target(cid, _s(item, "userId"), _s(item, "endpoint"))
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise RegistryError("connection reads left unprocessed after retries")
        return [found[cid] for cid in ids if cid in found]

    # --- resumable audiences (a fan-out that continues on SQS) --------------------------------

    def user_query(self, user_id: str) -> QuerySpec:
        return QuerySpec("GSI1PK = :pk", {":pk": {"S": f"USER#{user_id}"}}, "GSI1")

    def room_query(self, room: str) -> QuerySpec:
        return QuerySpec(
            "PK = :pk AND begins_with(SK, :conn)",
            {":pk": {"S": f"ROOM#{room}"}, ":conn": {"S": "CONN#"}},
        )

    def all_queries(self) -> list[QuerySpec]:
        return [
            QuerySpec("GSI2PK = :pk", {":pk": {"S": f"ALL#{n}"}}, "GSI2")
            for n in range(self._shards)
        ]

    def sweep(self, queries: list[QuerySpec]) -> Sweep:
        return Sweep(self, queries)

    def _page(self, spec: QuerySpec) -> tuple[list[Target], Any]:
        """One page of ``spec``: its live targets and the ``LastEvaluatedKey`` (None: done)."""
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": spec.key_condition,
            "FilterExpression": "#ttl > :now",
            "ProjectionExpression": _TARGET_PROJECTION,
            "ExpressionAttributeNames": {"#ttl": TTL},
            "ExpressionAttributeValues": {**spec.values, ":now": {"N": str(self._now())}},
        }
        if spec.index:
            params["IndexName"] = spec.index
        if spec.start:
            params["ExclusiveStartKey"] = spec.start
        if self.page_size:
            params["Limit"] = self.page_size
        response = self._ddb.query(**params)
        targets = [
            Target(cid, _s(item, "userId"), _s(item, "endpoint"))
            for item in response.get("Items", [])
            if (cid := _s(item, "connectionId"))
        ]
        return targets, response.get("LastEvaluatedKey") or None

    def _targets(self, spec: QuerySpec) -> Iterator[Target]:
        """Every live target of ``spec``, read page by page as the caller iterates."""
        while True:
            targets, last = self._page(spec)
            yield from targets
            if not last:
                return
            spec = replace(spec, start=last)

    @property
    def client(self) -> Any:
        """The DynamoDB client: presence keeps its items in the same table."""
        return self._ddb

    @property
    def table(self) -> str:
        return self._table

    @property
    def ttl_seconds(self) -> int:
        return self._ttl_seconds

    def now(self) -> float:
        """The registry's clock (epoch seconds): what ttl and token expiry are compared with."""
        return float(self._clock())

    def _now(self) -> int:
        return int(self._clock())

    @staticmethod
    def _conn_key(connection_id: str) -> dict[str, Any]:
        return {"PK": {"S": f"CONN#{connection_id}"}, "SK": {"S": "CONN"}}
