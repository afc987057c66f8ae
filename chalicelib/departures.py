"""Departures: removing connections found closed, and announcing the leaves that makes.

The broadcaster only reports the connections it found gone (410) and presence only says which
enter/leave to announce; ``Departures`` removes and announces, after the fan-out, in
``settle``: a bounded work-queue of rounds, each "remove every connection
found gone, then announce the leaves those removals made". Removing before announcing means an
announcement never meets the connections of its own round (the cascade the old nested prune
had: each prune's leave announcement found the next closed connection and pruned it from
inside itself). The queue stops after ``SETTLE_ROUNDS`` rounds: what the last round's
announcements found gone is left registered, for the next send's 410 or the connection's
``$disconnect`` to remove and announce, exactly as announcements used to leave every closed
connection they met; so no leave is dropped, and one handler's extra work is bounded.

Why not "remove what an announcement finds gone without announcing": that connection's user
would never be announced leaving (the next send no longer finds it, its ``$disconnect`` finds
nothing to remove), while presence's own items say they left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from chalicelib import log, protocol
from chalicelib.audience import Audience
from chalicelib.broadcaster import Broadcaster
from chalicelib.bus import ClosedBy, Events
from chalicelib.errors import classify
from chalicelib.presence import Announcement, Presence
from chalicelib.protocol import Scope
from chalicelib.registry import Registry

# Rounds of "remove the gone, announce their leaves" one call runs (see the docstring).
SETTLE_ROUNDS = 2


@dataclass
class Settled:
    """What one ``settle`` did: connections removed, removals that failed (left to TTL),
    and connections found gone but left for the next send or their ``$disconnect``."""

    removed: int = 0
    failed: int = 0
    left: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            k: v
            for k, v in (
                ("pruned", self.removed),
                ("pruneFailed", self.failed),
                ("goneLeft", self.left),
            )
            if v
        }


class Departures:
    """Removes closed connections and announces presence events, for the ``Switchboard``."""

    def __init__(
        self,
        presence: Presence,
        broadcaster: Broadcaster,
        registry: Registry,
        workers: int = 32,
        events: Events | None = None,
        presence_on: Callable[[str], bool] = lambda room: True,
    ) -> None:
        self._presence = presence
        # Whether a room announces enters and leaves at all (its namespace's ``presence``).
        self._presence_on = presence_on
        self._broadcaster = broadcaster
        self._registry = registry
        # Back-end events (bus.py): a pruned connection's close, each announced presence change.
        self._events = events or Events()
        # Removals and announcements run side by side (each is a few DynamoDB writes or one
        # room's fan-out); nothing run here submits to this pool again, so it never waits on
        # itself (the old nested prunes needed a thread-local depth for that).
        self._pool = ThreadPoolExecutor(
            max_workers=max(1, min(workers, 32)), thread_name_prefix="departures"
        )

    def settle(self, gone: Iterable[str], leaves: Sequence[Announcement] = ()) -> Settled:
        """Remove the connections found ``gone`` (410) and announce ``leaves`` and the leaves
        those removals make, in at most ``SETTLE_ROUNDS`` rounds (see the module docstring).
        Never raises: a removal that fails is counted and left to TTL."""
        settled = Settled()
        done: set[str] = set()
        pending_gone = list(gone)
        pending_leaves = list(leaves)
        for _ in range(SETTLE_ROUNDS):
            ids = [cid for cid in dict.fromkeys(pending_gone) if cid not in done]
            done.update(ids)
            for removal in self._pool.map(self._remove_quietly, ids):
                if removal is None:
                    settled.failed += 1
                else:
                    settled.removed += 1
                    pending_leaves.extend(removal)
            if not pending_leaves:
                return settled
            found = self._pool.map(self._announce, pending_leaves)
            pending_gone = [cid for ids_found in found for cid in ids_found]
            pending_leaves = []
        settled.left = len({cid for cid in pending_gone if cid not in done})
        return settled

    def _remove_quietly(self, connection_id: str) -> list[Announcement] | None:
        """Remove a connection found closed: the leaves to announce ([] if it was removed
        already), or None when the registry failed (TTL reaps it)."""
        try:
            removal = self._presence.removal(connection_id)
            if removal is None:
                return []
            self._events.connection_closed(
                connection_id, removal.user_id, removal.connected_at, ClosedBy.GONE
            )
            return removal.leaves
        except Exception as exc:  # noqa: BLE001 - one failed removal must not stop the rest
            log.emit(
                logging.WARNING,
                event="prune_failed",
                connectionId=connection_id,
                error=classify(exc).detail,
            )
            return None

    def _announce(self, announcement: Announcement) -> list[str]:
        """Log a presence event and fan it out to the room (not to the connection that caused
        it); the ids the fan-out found gone. Never raises: the change it reports happened."""
        room = announcement.room
        if not self._presence_on(room):
            return []  # presence off: nothing logged, nothing sent
        with log.event_log(
            event="presence", room=room, change=announcement.event, userId=announcement.user_id
        ) as record:
            try:
                # The room's members are read beside the event's log writes (a room over the
                # cap wastes that one Query; it sends nothing).
                audience = Audience.of(self._registry, Scope.ROOM, room)
                audience.start()
                frame = self._presence.log_event(announcement)
                if frame is None:
                    record["outcome"] = "over_cap"
                    return []
                record.update(stream=frame["stream"], seq=frame["seq"])
                self._events.presence(
                    room,
                    announcement.event,
                    announcement.user_id,
                    frame["stream"],
                    frame["seq"],
                    frame.get("epoch"),
                )
                report = self._broadcaster.fan_out(
                    # Members who may not see presence (permissions: ``quiet``) are skipped.
                    (t for t in audience if not t.quiet),
                    protocol.encode(frame),
                    exclude=announcement.exclude,
                    scope="presence",
                )
            except Exception as exc:  # noqa: BLE001 - see the docstring
                record.update(outcome="presence_error", error=type(classify(exc)).__name__)
                return []
            record.update(report.as_dict())
            return list(report.gone_ids)
