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
from dataclasses import dataclass
from typing import Any

from chalicelib import protocol
from chalicelib.message_log import MessageLog
from chalicelib.presence_store import PresenceStore, Roster
from chalicelib.protocol import Scope
from chalicelib.registry import ConnectionRecord, Registry

_log = logging.getLogger("switchboard")

ENTER = "enter"
LEAVE = "leave"

__all__ = ["ENTER", "LEAVE", "Announcement", "Presence", "Roster"]


@dataclass(frozen=True)
class Announcement:
    """A presence event to log and fan out: ``user_id`` entered or left ``room``.
    ``exclude`` is the connection that caused it (a joining connection is not told)."""

    room: str
    event: str
    user_id: str
    exclude: str | None = None
    info: dict[str, Any] | None = None  # an enter's member info (the token's info claim)
    # Whether the room is small enough for events, when the caller already knows (a join
    # reads it beside its transaction); None: ``log_event`` reads it.
    small: bool | None = None


@dataclass(frozen=True)
class Removal:
    """A removed connection: its user, when it connected (epoch ms, 0 if unknown) and the
    leaves to announce."""

    user_id: str
    connected_at: int
    leaves: list[Announcement]
    closed_by: str | None = None  # a kick or an expiry that marked it before closing


class Presence:
    """Keeps the per-user items of rooms in step with memberships and says what to announce.

    ``join``/``leave``/``remove`` replace the registry's calls of the same name for callers
    that want presence. The items themselves are ``PresenceStore``'s (presence_store.py).
    These methods return the ``Announcement`` to make rather than making it: the caller
    (``Switchboard``) logs it with ``log_event`` and fans it out, so presence never calls the
    broadcaster (and a removal found by a fan-out never nests inside it).
    """

    def __init__(
        self,
        registry: Registry,
        message_log: MessageLog,
        max_members: int = 100,
        max_list: int = 1000,
    ) -> None:
        self._registry = registry
        self._store = PresenceStore(registry.table, registry, max_list)
        self._log = message_log
        self._max_members = max_members

    # --- membership changes ---------------------------------------------------------------

    def join(
        self,
        conn: ConnectionRecord,
        room: str,
        quiet: bool = False,
        after: int | None = None,
        max_rooms: int | None = None,
    ) -> Announcement | None:
        """Join ``room``; the user's enter to announce when this is their first connection
        there, else None. ``quiet``: this member does not receive the room's presence events;
        ``after``: where its history starts (permissions); ``max_rooms``: the connection's cap,
        checked in the write. Raises ``NotConnected`` and ``RoomLimitReached`` like
        ``Registry.join``."""
        if self._store.join(conn, room, quiet=quiet, after=after, max_rooms=max_rooms):
            return Announcement(
                room, ENTER, conn.user_id, exclude=conn.connection_id, info=conn.info
            )
        return None

    def leave(self, conn: ConnectionRecord, room: str) -> Announcement | None:
        """Leave ``room``; the user's leave to announce when this was their last connection
        there, else None."""
        if self._store.leave(conn, room):
            return Announcement(room, LEAVE, conn.user_id)
        return None

    def remove(self, connection_id: str) -> list[Announcement] | None:
        """Remove a connection (``Registry.remove_connection``), then take it out of the
        presence of every room it was in. Returns the user's leaves to announce (the rooms
        where it was their last connection), or None if the connection did not exist.
        Registry errors raise; presence errors past the removal are logged (ttl heals them)."""
        removal = self.removal(connection_id)
        return None if removal is None else removal.leaves

    def removal(self, connection_id: str) -> Removal | None:
        """``remove``, also saying whose connection it was and since when (the
        "Connection Closed" event's user and duration)."""
        departure = self._store.remove(connection_id)
        if departure is None:
            return None
        leaves = [Announcement(room, LEAVE, departure.user_id) for room in departure.left]
        return Removal(departure.user_id, departure.connected_at, leaves, departure.closed_by)

    # --- reads ----------------------------------------------------------------------------

    def members(self, room: str, cursor: str | None = None) -> Roster:
        """Every user present in ``room`` (count), one page after ``cursor`` with their info."""
        return self._store.members(room, cursor)

    def has_room_for(self, room: str, user_id: str, cap: int) -> bool:
        """A namespace's ``maxMembers``: whether the user may be present (see the store)."""
        return self._store.has_room_for(room, user_id, cap)

    def small(self, room: str) -> bool:
        """True when ``room`` has at most ``max_members`` users: small enough for events."""
        return self._store.small(room, self._max_members)

    def small_with(self, room: str, user_id: str) -> bool:
        """``small`` as it is with ``user_id`` present: read beside a join's transaction (so
        its enter needs no Query after it), which may commit before or after this read, so
        the joining user is counted whether the read sees them or not."""
        others = 0
        for user, _ in self._store.users(room, page=self._max_members + 1):
            if user != user_id:
                others += 1
                if others + 1 > self._max_members:
                    return False
        return others + 1 <= self._max_members

    # --- events ---------------------------------------------------------------------------

    def log_event(self, announcement: Announcement) -> dict[str, Any] | None:
        """Log ``announcement`` in its room's stream; the logged frame (with ``stream`` and
        ``seq``) for the caller to fan out to the room, or None when the room is over
        ``max_members`` (no events). Raises ``LogWriteError`` and registry errors."""
        room = announcement.room
        small = announcement.small if announcement.small is not None else self.small(room)
        if not small:
            return None
        return self._log.append(
            protocol.stream_name(Scope.ROOM, room),
            protocol.presence_frame(
                room, announcement.event, announcement.user_id, announcement.info
            ),
        )
