"""Presence: who is in each room, derived from the room membership items (no Scan).

One item per user present in a room, in the room's partition next to the memberships:
``PK=ROOM#<room> SK=USER#<userId>`` with userId, ``conns`` (a string set: that user's
connection ids in the room) and ttl. ``room_members`` (the fan-out's query) reads
``begins_with(SK, "CONN#")`` only, so these items are never delivery targets.

Why a set of ids rather than a counter: adding or deleting an id is idempotent, so a join
retried, a ``$disconnect`` and a 410 prune of the same connection racing each other, or a
removal run twice, change the set once; a counter would count them twice and leave a user
present for ever (or absent while connected).

- **join**: the per-user update rides in the join's own transaction (membership Put +
  connection Update + this), so the set always holds exactly the connections whose membership
  committed. It is written conditionally: ``attribute_not_exists(conns)`` means "the first
  connection of this user": the user **enters**; if that condition fails (the user is already
  there) the transaction is retried with ``attribute_exists(conns)``: no event.
- **leave**: also in the leave's transaction, two exclusive variants: the last connection
  (``size(conns) = 1``: the item is deleted, the user **leaves**) or one of several (its id is
  deleted from the set). If neither condition holds, the id is not in the set (a membership
  older than presence): a plain leave, then the removal below.
- **connection removed** (``$disconnect``, a 410 prune, a kick, an expired token): the
  registry deletes the memberships and then the connection item; after that no join or leave
  can commit for the connection (their transactions require the connection item), so its ids
  are deleted from the sets of every room it was in with one conditional UpdateItem each
  (``contains(conns, :id)``, so only one of two racing removals does it). The update that
  empties a set (``ReturnValues=ALL_NEW`` shows no ``conns`` left) is the user's **leave**;
  the empty item is then deleted on condition it is still empty.

The ttl of a user item is set on every join to join time + ``CONNECTION_TTL_SECONDS``: at least
the ttl of every connection in its set (a connection's ttl is its connect time + the same
period), so an id whose removal was lost (a handler killed midway) stops counting, at the
latest, when the last connection that joined would have expired; every read filters ``ttl >
now`` and ``attribute_exists(conns)``.

Events (``{"type":"presence","room":..,"event":"enter"|"leave","userId":..}``): ``join``,
``leave`` and ``remove`` return them as ``Announcement``s; the caller (``Switchboard``) has
``log_event`` log each in the room's stream (``room:<name>``: they carry ``stream`` and
``seq`` and are replayed by a resume) and fans it out to the room's members, except the
joining connection. Presence never calls the broadcaster. Rooms with more
than ``PRESENCE_MAX_MEMBERS`` users send no events (checked with one Query of at most that
many + 1 user items, only when an enter or leave happens).

Cost per join: the transaction gains one item (TransactWriteItems bills 2 WCU per item up to
1 KB: +2 WCU; +2 more when the user was already present and the transaction is retried). Per
leave: +2 WCU likewise. Per removed connection: 1 UpdateItem (1 WCU) per room, +1 DeleteItem
when the user left. An enter or leave event adds the size check (one Query, about 0.5 RCU per
4 KB of user items read), the log's two writes and the room's fan-out.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import log, protocol
from chalicelib.message_log import MessageLog
from chalicelib.protocol import Scope
from chalicelib.registry import TTL, ConnectionRecord, ItemConflict, Registry

_log = logging.getLogger("switchboard")

ENTER = "enter"
LEAVE = "leave"
# A join or leave retried this many times when the user's item keeps changing under it (other
# connections of the same user joining or leaving the same room at the same moment).
_ATTEMPTS = 6


@dataclass(frozen=True)
class Announcement:
    """A presence event to log and fan out: ``user_id`` entered or left ``room``.
    ``exclude`` is the connection that caused it (a joining connection is not told)."""

    room: str
    event: str
    user_id: str
    exclude: str | None = None


@dataclass(frozen=True)
class Roster:
    """Who is in a room: ``count`` users, the first ``max_list`` of them by userId."""

    room: str
    count: int
    users: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "count": self.count,
            "users": self.users,
            "truncated": self.truncated,
        }


class Presence:
    """Keeps the per-user items of rooms in step with memberships and announces enter/leave.

    ``join``/``leave``/``remove`` replace the registry's calls of the same name for callers
    that want presence. They return the ``Announcement`` to make rather than making it: the
    caller (``Switchboard``) logs it with ``log_event`` and fans it out, so presence never
    calls the broadcaster (and a removal found by a fan-out never nests inside it).
    """

    def __init__(
        self,
        registry: Registry,
        message_log: MessageLog,
        max_members: int = 100,
        max_list: int = 1000,
    ) -> None:
        self._registry = registry
        self._ddb = registry.client
        self._table = registry.table
        self._log = message_log
        self._max_members = max_members
        self._max_list = max_list

    # --- membership changes ---------------------------------------------------------------

    def join(self, conn: ConnectionRecord, room: str) -> Announcement | None:
        """Join ``room``; the user's enter to announce when this is their first connection
        there, else None. Raises ``NotConnected`` like ``Registry.join``."""
        for attempt in range(_ATTEMPTS):
            first = attempt % 2 == 0
            try:
                self._registry.join(conn, room, also=[self._add(conn, room, first)])
            except ItemConflict:
                continue
            if first:
                return Announcement(room, ENTER, conn.user_id, exclude=conn.connection_id)
            return None
        raise ItemConflict(conn.connection_id)

    def leave(self, conn: ConnectionRecord, room: str) -> Announcement | None:
        """Leave ``room``; the user's leave to announce when this was their last connection
        there, else None."""
        cid, user = conn.connection_id, conn.user_id
        for attempt in range(4):
            last = attempt % 2 == 0
            item = self._delete_last(user, cid, room) if last else self._delete_one(user, cid, room)
            try:
                self._registry.leave(cid, room, also=[item])
            except ItemConflict:
                continue
            return Announcement(room, LEAVE, user) if last else None
        # Not in the set at all (a membership older than presence, or a user item past its
        # ttl): leave plainly, then drop the id in case a racing join of this very
        # connection added it meanwhile.
        self._registry.leave(cid, room)
        return Announcement(room, LEAVE, user) if self._drop(user, cid, room) else None

    def remove(self, connection_id: str) -> list[Announcement] | None:
        """Remove a connection (``Registry.remove_connection``), then take it out of the
        presence of every room it was in. Returns the user's leaves to announce (the rooms
        where it was their last connection), or None if the connection did not exist.
        Registry errors raise; presence errors past the removal are logged (ttl heals them)."""
        removed = self._registry.remove_connection(connection_id)
        if removed is None:
            return None
        leaves: list[Announcement] = []
        for room in sorted(removed.rooms):
            try:
                left = self._drop(removed.user_id, connection_id, room)
            except (ClientError, BotoCoreError) as exc:
                log.emit(
                    logging.WARNING,
                    event="presence_error",
                    room=room,
                    connectionId=connection_id,
                    error=type(exc).__name__,
                )
                continue
            if left:
                leaves.append(Announcement(room, LEAVE, removed.user_id))
        return leaves

    def _drop(self, user_id: str, connection_id: str, room: str) -> bool:
        try:
            response = self._ddb.update_item(
                TableName=self._table,
                Key=_key(room, user_id),
                UpdateExpression="DELETE conns :ids",
                ConditionExpression="contains(conns, :id)",
                ExpressionAttributeValues={
                    ":ids": {"SS": [connection_id]},
                    ":id": {"S": connection_id},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException as exc:
            # Not in the set: removed already (a racing removal, or a leave), or by this very
            # call: botocore retried an update whose first answer was lost (a read timeout),
            # and the first attempt emptied the set. An emptied item left behind is deleted
            # here either way; the leave is ours to announce only when the call was retried.
            # ALL_OLD on a failed condition: "ReturnValuesOnConditionCheckFailure" in
            # https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html
            # (botocore puts the item in the error's "Item"); RetryAttempts is botocore's count
            # of resends, in every response's and error's ResponseMetadata.
            old = exc.response.get("Item")
            if old is None or "conns" in old:
                return False
            retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
            self._delete_if_empty(room, user_id)
            return bool(retried)
        if "conns" in response.get("Attributes", {}):
            return False
        self._delete_if_empty(room, user_id)
        return True

    def _delete_if_empty(self, room: str, user_id: str) -> None:
        try:
            self._ddb.delete_item(
                TableName=self._table,
                Key=_key(room, user_id),
                ConditionExpression="attribute_not_exists(conns)",
            )
        except self._ddb.exceptions.ConditionalCheckFailedException:
            pass  # a connection of the user joined meanwhile (and entered): keep it

    # --- transaction items ----------------------------------------------------------------

    def _add(self, conn: ConnectionRecord, room: str, first: bool) -> dict[str, Any]:
        ttl = int(self._registry.now()) + self._registry.ttl_seconds
        return {
            "Update": {
                "TableName": self._table,
                "Key": _key(room, conn.user_id),
                "UpdateExpression": "ADD conns :ids SET userId = :u, #ttl = :ttl",
                "ConditionExpression": (
                    "attribute_not_exists(conns)" if first else "attribute_exists(conns)"
                ),
                "ExpressionAttributeNames": {"#ttl": TTL},
                "ExpressionAttributeValues": {
                    ":ids": {"SS": [conn.connection_id]},
                    ":u": {"S": conn.user_id},
                    ":ttl": {"N": str(ttl)},
                },
            }
        }

    def _delete_last(self, user_id: str, connection_id: str, room: str) -> dict[str, Any]:
        return {
            "Delete": {
                "TableName": self._table,
                "Key": _key(room, user_id),
                "ConditionExpression": "contains(conns, :id) AND size(conns) = :one",
                "ExpressionAttributeValues": {":id": {"S": connection_id}, ":one": {"N": "1"}},
            }
        }

    def _delete_one(self, user_id: str, connection_id: str, room: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": _key(room, user_id),
                "UpdateExpression": "DELETE conns :ids",
                "ConditionExpression": "contains(conns, :id) AND size(conns) > :one",
                "ExpressionAttributeValues": {
                    ":ids": {"SS": [connection_id]},
                    ":id": {"S": connection_id},
                    ":one": {"N": "1"},
                },
            }
        }

    # --- reads ----------------------------------------------------------------------------

    def members(self, room: str) -> Roster:
        """Every user present in ``room`` (count), the first ``max_list`` listed."""
        users: list[dict[str, Any]] = []
        count = 0
        for user_id, connections in self._users(room):
            count += 1
            if len(users) < self._max_list:
                users.append({"userId": user_id, "connections": connections})
        return Roster(room, count, users, truncated=count > len(users))

    def small(self, room: str) -> bool:
        """True when ``room`` has at most ``max_members`` users: small enough for events."""
        for n, _ in enumerate(self._users(room, page=self._max_members + 1), start=1):
            if n > self._max_members:
                return False
        return True

    def _users(self, room: str, page: int | None = None) -> Iterator[tuple[str, int]]:
        params: dict[str, Any] = {
            "TableName": self._table,
            "KeyConditionExpression": "PK = :pk AND begins_with(SK, :user)",
            "FilterExpression": "#ttl > :now AND attribute_exists(conns)",
            "ProjectionExpression": "userId, conns",
            "ExpressionAttributeNames": {"#ttl": TTL},
            "ExpressionAttributeValues": {
                ":pk": {"S": f"ROOM#{room}"},
                ":user": {"S": "USER#"},
                ":now": {"N": str(int(self._registry.now()))},
            },
        }
        if page is not None:
            params["Limit"] = page
        while True:
            response = self._ddb.query(**params)
            for item in response.get("Items", []):
                ids = item.get("conns", {}).get("SS", [])
                yield item.get("userId", {}).get("S", ""), len(ids)
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            params["ExclusiveStartKey"] = last

    # --- events ---------------------------------------------------------------------------

    def log_event(self, announcement: Announcement) -> dict[str, Any] | None:
        """Log ``announcement`` in its room's stream; the logged frame (with ``stream`` and
        ``seq``) for the caller to fan out to the room, or None when the room is over
        ``max_members`` (no events). Raises ``LogWriteError`` and registry errors."""
        room = announcement.room
        if not self.small(room):
            return None
        return self._log.append(
            protocol.stream_name(Scope.ROOM, room),
            protocol.presence_frame(room, announcement.event, announcement.user_id),
        )


def _key(room: str, user_id: str) -> dict[str, Any]:
    return {"PK": {"S": f"ROOM#{room}"}, "SK": {"S": f"USER#{user_id}"}}
