"""Presence storage: which users are in each room, kept beside the room's memberships.

The storage side of presence (``presence.py`` announces; its docstring has the whole design).
One item per user present in a room, in the room's partition next to the memberships:
``PK=ROOM#<room> SK=USER#<userId>`` with userId, ``conns`` (a string set: that user's
connection ids in the room) and ttl. A set, not a counter, because adding or deleting an id is
idempotent: a join retried, a ``$disconnect`` and a 410 prune racing, or a removal run twice
change the set once.

- **join**: the per-user update rides in the registry's join transaction; written on
  ``attribute_not_exists(conns)`` (the user's first connection: an enter), retried on
  ``attribute_exists(conns)`` when that fails (already present: no event).
- **leave**: in the leave's transaction, the last connection (``size(conns) = 1``: delete
  the item, a leave) or one of several (delete the id); neither: a plain leave, then a drop.
- **remove** (a connection gone): after the registry removed it, its id is dropped from each
  room's set with one conditional UpdateItem (``contains(conns, :id)``); the update that
  empties the set is the user's leave, and the empty item is deleted on condition it is still
  empty.

Reads filter ``ttl > now`` and ``attribute_exists(conns)``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import keys, log, protocol
from chalicelib.keys import TTL
from chalicelib.registry import ConnectionRecord, ItemConflict, Registry, info_json, parse_info
from chalicelib.table import (
    Change,
    ConditionFailed,
    Delete,
    Item,
    Query,
    Table,
    TxOp,
    Update,
    query_all,
)

# A join retried this many times when the user's item keeps changing under it (other
# connections of the same user joining or leaving the same room at the same moment).
_ATTEMPTS = 6


@dataclass(frozen=True)
class Roster:
    """Who is in a room: ``count`` users; ``users`` one page of them by userId, after a
    cursor; ``next`` the cursor of the page after it (None at the end)."""

    room: str
    count: int
    users: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    next: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "room": self.room,
            "count": self.count,
            "users": self.users,
            "truncated": self.truncated,
        }
        if self.next is not None:
            out["next"] = self.next
        return out


# A members page stays within one post: the 128 KB limit less the frame's own fields.
MEMBERS_PAGE_BYTES = protocol.MAX_PAYLOAD_BYTES - protocol.FRAME_ENVELOPE_BYTES


def page_of(
    users: Iterator[dict[str, Any]], cursor: str | None, max_list: int, max_bytes: int
) -> tuple[int, list[dict[str, Any]], str | None]:
    """Count every user; list those after ``cursor`` (userIds in order) up to ``max_list``
    entries and ``max_bytes`` of JSON; the cursor of the next page (the last userId listed)
    when more follow. Pure: the Query's items in, the page out."""
    count = 0
    page: list[dict[str, Any]] = []
    size = 0
    full = False
    more = False
    for user in users:
        count += 1
        if cursor is not None and user["userId"] <= cursor:
            continue
        if full:
            more = True
            continue
        entry_bytes = len(protocol.encode(user)) + 1
        if len(page) >= max_list or (page and size + entry_bytes > max_bytes):
            full = more = True
            continue
        page.append(user)
        size += entry_bytes
    return count, page, page[-1]["userId"] if more and page else None


@dataclass(frozen=True)
class Departure:
    """A removed connection: its user, and the rooms where it was the user's last one."""

    user_id: str
    left: tuple[str, ...] = ()
    connected_at: int = 0  # epoch ms, 0 if unknown
    closed_by: str | None = None  # who closed it, when a kick or an expiry marked it


class PresenceStore:
    """The per-user items of rooms, kept in step with the registry's memberships."""

    def __init__(self, table: Table, registry: Registry, max_list: int = 1000) -> None:
        self._table = table
        self._registry = registry
        self._max_list = max_list

    # --- membership changes ---------------------------------------------------------------

    def join(
        self,
        conn: ConnectionRecord,
        room: str,
        quiet: bool = False,
        after: int | None = None,
        max_rooms: int | None = None,
    ) -> bool:
        """Join ``room``; True when this is the user's first connection there (an enter).
        ``quiet`` and ``after`` go on the membership (``Registry.join``). Raises
        ``NotConnected`` and ``RoomLimitReached`` like ``Registry.join``."""
        for attempt in range(_ATTEMPTS):
            first = attempt % 2 == 0
            try:
                self._registry.join(
                    conn,
                    room,
                    also=[self._add(conn, room, first)],
                    quiet=quiet,
                    after=after,
                    max_rooms=max_rooms,
                )
            except ItemConflict:
                continue
            return first
        raise ItemConflict(conn.connection_id)

    def leave(self, conn: ConnectionRecord, room: str) -> bool:
        """Leave ``room``; True when this was the user's last connection there (a leave)."""
        cid, user = conn.connection_id, conn.user_id
        for attempt in range(4):
            last = attempt % 2 == 0
            item = self._delete_last(user, cid, room) if last else self._delete_one(user, cid, room)
            try:
                self._registry.leave(cid, room, also=[item])
            except ItemConflict:
                continue
            return last
        # Not in the set at all (a membership older than presence, or a user item past its
        # ttl): leave plainly, then drop the id in case a racing join of this very
        # connection added it meanwhile.
        self._registry.leave(cid, room)
        return self._drop(user, cid, room)

    def remove(self, connection_id: str) -> Departure | None:
        """Remove a connection (``Registry.remove_connection``), then take it out of the
        presence of every room it was in; None if it was already gone. Registry errors raise;
        presence errors past the removal are logged (ttl heals them)."""
        removed = self._registry.remove_connection(connection_id)
        if removed is None:
            return None
        left: list[str] = []
        for room in sorted(removed.rooms):
            try:
                if self._drop(removed.user_id, connection_id, room):
                    left.append(room)
            except (ClientError, BotoCoreError) as exc:
                log.emit(
                    logging.WARNING,
                    event="presence_error",
                    room=room,
                    connectionId=connection_id,
                    error=type(exc).__name__,
                )
        return Departure(removed.user_id, tuple(left), removed.connected_at, removed.closed_by)

    def _drop(self, user_id: str, connection_id: str, room: str) -> bool:
        key = keys.presence_key(room, user_id)
        try:
            new = self._table.update(
                key,
                Update(delete={"conns": {connection_id}}),
                condition=Attr("conns").contains(connection_id),
                returns="ALL_NEW",
                old_on_failure=True,
            )
        except ConditionFailed as failed:
            # Not in the set: removed already (a racing removal, or a leave), or by this very
            # call: botocore retried an update whose first answer was lost (a read timeout),
            # and the first attempt emptied the set. An emptied item left behind is deleted
            # here either way; the leave is ours to announce only when the call was retried.
            # ALL_OLD on a failed condition: "ReturnValuesOnConditionCheckFailure" in
            # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html
            # (the table layer reads it from the error, and botocore's RetryAttempts).
            if failed.old is None or "conns" in failed.old:
                return False
            self._delete_if_empty(room, user_id)
            return failed.retried
        if "conns" in (new or {}):
            return False
        self._delete_if_empty(room, user_id)
        return True

    def _delete_if_empty(self, room: str, user_id: str) -> None:
        try:
            self._table.delete(
                keys.presence_key(room, user_id), condition=Attr("conns").not_exists()
            )
        except ConditionFailed:
            pass  # a connection of the user joined meanwhile (and entered): keep it

    # --- transaction items ----------------------------------------------------------------

    def _add(self, conn: ConnectionRecord, room: str, first: bool) -> TxOp:
        ttl = int(self._table.now()) + self._registry.ttl_seconds
        fields: dict[str, Any] = {"userId": conn.user_id, TTL: ttl}
        if conn.info is not None:
            # The latest connection's info wins: members lists it without reading connections.
            fields["info"] = info_json(conn.info)
        return Change(
            keys.presence_key(room, conn.user_id),
            Update(add={"conns": {conn.connection_id}}, set=fields),
            Attr("conns").not_exists() if first else Attr("conns").exists(),
        )

    @staticmethod
    def _delete_last(user_id: str, connection_id: str, room: str) -> TxOp:
        return Delete(
            keys.presence_key(room, user_id),
            Attr("conns").contains(connection_id) & Attr("conns").size().eq(1),
        )

    @staticmethod
    def _delete_one(user_id: str, connection_id: str, room: str) -> TxOp:
        return Change(
            keys.presence_key(room, user_id),
            Update(delete={"conns": {connection_id}}),
            Attr("conns").contains(connection_id) & Attr("conns").size().gt(1),
        )

    # --- reads ----------------------------------------------------------------------------

    def members(self, room: str, cursor: str | None = None) -> Roster:
        """Every user present in ``room`` (count), one page of them after ``cursor`` (at most
        ``max_list`` users and one post's worth of JSON), with their info."""
        entries = (self._entry(item) for item in self._items(room, ("userId", "conns", "info")))
        count, users, nxt = page_of(entries, cursor, self._max_list, MEMBERS_PAGE_BYTES)
        return Roster(room, count, users, truncated=count > len(users), next=nxt)

    @staticmethod
    def _entry(item: Item) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "userId": str(item.get("userId", "")),
            "connections": len(item.get("conns", set())),
        }
        info = parse_info(item.get("info"))
        if info is not None:
            entry["info"] = info
        return entry

    def has_room_for(self, room: str, user_id: str, cap: int) -> bool:
        """Whether ``user_id`` may be present in ``room`` under a cap of ``cap`` users: they
        are there already, or fewer than ``cap`` are (one Query of at most ``cap`` + 1 user
        items). Concurrent joins may overshoot by the joins in flight, like the other caps."""
        for n, (user, _) in enumerate(self.users(room, page=cap + 1), start=1):
            if user == user_id:
                return True
            if n >= cap:
                return False
        return True

    def small(self, room: str, max_members: int) -> bool:
        """True when ``room`` has at most ``max_members`` users: small enough for events."""
        for n, _ in enumerate(self.users(room, page=max_members + 1), start=1):
            if n > max_members:
                return False
        return True

    def users(self, room: str, page: int | None = None) -> Iterator[tuple[str, int]]:
        """``(userId, connections)`` of each user present in ``room``, by userId."""
        for item in self._items(room, ("userId", "conns"), page):
            yield str(item.get("userId", "")), len(item.get("conns", set()))

    def _items(
        self, room: str, projection: tuple[str, ...], page: int | None = None
    ) -> Iterator[Item]:
        query = Query(
            keys.room_partition(room),
            sk_prefix=keys.USER_PREFIX,
            filter=Attr("conns").exists(),
            live=True,
            projection=projection,
            limit=page,
        )
        return query_all(self._table, query)
