"""Ordering and dedupe without I/O: stream entries in, the ones the app may see now out.

The server numbers every entry of a stream (``room:<name>``, ``user:<id>``, ``all``) with a
``seq``. An entry is a ``message`` or, in a room's stream, a ``presence`` event (a user entered
or left the room): presence events are logged in the room's stream like messages, so they take
seqs there, are replayed by a resume and listed in history pages. An entry may arrive twice
(live and replayed) or overtake another (two Lambdas fanning out at once). ``Sequencer`` hands
each ``(stream, seq)`` on once, in seq order per stream, whatever the entry's kind: an entry
after a gap is held until the gap is filled, declared skipped (a seq whose write failed never
holds an entry) or declared gone (past retention). Fetching what is missing is the client's job
(``history``); this class only says which streams wait and from which seq.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """One ``message`` frame. ``raw`` is the frame as received."""

    stream: str
    seq: int
    id: str
    sender: str
    scope: str
    text: str
    room: str | None = None
    sent_at: int | None = None
    replayed: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_frame(cls, frame: Mapping[str, Any]) -> Message | None:
        """The message of a server ``message`` frame, or None when it has no usable stream/seq."""
        position = _position(frame)
        if position is None:
            return None
        stream, seq = position
        room = frame.get("room")
        sent_at = frame.get("sentAt")
        return cls(
            stream=stream,
            seq=seq,
            id=str(frame.get("id", "")),
            sender=str(frame.get("from", "")),
            scope=str(frame.get("scope", "")),
            text=str(frame.get("text", "")),
            room=room if isinstance(room, str) else None,
            sent_at=sent_at if isinstance(sent_at, int) else None,
            replayed=frame.get("replayed") is True,
            raw=dict(frame),
        )


@dataclass(frozen=True)
class Presence:
    """One ``presence`` frame: ``user_id`` entered (first connection joined) or left (last
    connection gone) ``room``. ``raw`` is the frame as received."""

    stream: str
    seq: int
    room: str
    event: str  # "enter" or "leave"
    user_id: str
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    replayed: bool = False

    @classmethod
    def from_frame(cls, frame: Mapping[str, Any]) -> Presence | None:
        """The event of a server ``presence`` frame, or None when it has no usable stream/seq."""
        position = _position(frame)
        return (
            None
            if position is None
            else cls(
                *position,
                room=str(frame.get("room", "")),
                event=str(frame.get("event", "")),
                user_id=str(frame.get("userId", "")),
                replayed=frame.get("replayed") is True,
                raw=dict(frame),
            )
        )


Entry = Message | Presence


def entry_from_frame(frame: Mapping[str, Any]) -> Entry | None:
    """The stream entry of a ``message`` or ``presence`` frame (a history page lists both), or
    None for any other frame or one without a usable stream/seq."""
    kind = frame.get("type")
    if kind == "presence":
        return Presence.from_frame(frame)
    if kind == "message":
        return Message.from_frame(frame)
    return None


def _position(frame: Mapping[str, Any]) -> tuple[str, int] | None:
    """A logged frame's ``(stream, seq)``, or None when it has no usable ones."""
    stream, seq = frame.get("stream"), frame.get("seq")
    if not isinstance(stream, str) or isinstance(seq, bool) or not isinstance(seq, int):
        return None
    return (stream, seq) if seq >= 1 else None


@dataclass
class Stats:
    """What ordering did so far (for apps' metrics and the tests)."""

    delivered: int = 0  # entries handed on: messages and presence events
    presence: int = 0  # of which presence events
    duplicates: int = 0  # (stream, seq) seen before: suppressed
    held: int = 0  # arrived after a gap and waited
    filled_from_history: int = 0  # missing messages fetched with history while live
    skipped: int = 0  # seqs the server said will never hold a message
    gone: int = 0  # seqs past retention, never to be delivered


class Sequencer:
    """Per stream, the last seq handed to the app and what waits behind a gap.

    ``known`` is where each stream starts (from a ``SeqStore``). A stream seen for the first
    time starts at its first message: the app gets what arrives from then on, not the stream's
    whole past (seed ``known`` with ``{stream: 0}`` to start from its beginning).
    """

    def __init__(self, known: Mapping[str, int] | None = None) -> None:
        self._last: dict[str, int] = dict(known or {})
        self._held: dict[str, dict[int, Entry]] = {}
        self._skipped: dict[str, set[int]] = {}
        self.stats = Stats()

    def last(self) -> dict[str, int]:
        """The last seq handed on, per stream."""
        return dict(self._last)

    def waiting(self) -> dict[str, int]:
        """Streams with entries held behind a gap -> the seq to fetch after."""
        return {stream: self._last[stream] for stream, held in self._held.items() if held}

    def offer(self, message: Entry, from_history: bool = False) -> list[Entry]:
        """Take one received entry (message or presence event); the entries now deliverable,
        in order."""
        stream, seq = message.stream, message.seq
        last = self._last.setdefault(stream, seq - 1)
        held = self._held.setdefault(stream, {})
        if seq <= last or seq in held:
            self.stats.duplicates += 1
            return []
        held[seq] = message
        if from_history:
            self.stats.filled_from_history += 1
        ready = self._drain(stream)
        if seq in held:
            self.stats.held += 1
        return ready

    def skip(self, stream: str, seqs: list[int]) -> list[Entry]:
        """``seqs`` of ``stream`` will never hold a message: stop waiting for them."""
        last = self._last.get(stream)
        if last is None:
            return []
        self._skipped.setdefault(stream, set()).update(s for s in seqs if s > last)
        return self._drain(stream)

    def advance(self, stream: str, seq: int) -> list[Entry]:
        """Everything of ``stream`` up to ``seq`` is gone (past retention): move past it."""
        last = self._last.get(stream, 0)
        if seq > last:
            self.stats.gone += seq - last
            self._last[stream] = seq
            held = self._held.get(stream, {})
            for old in [s for s in held if s <= seq]:
                del held[old]
        return self._drain(stream)

    def _drain(self, stream: str) -> list[Entry]:
        last = self._last[stream]
        held = self._held.get(stream, {})
        skipped = self._skipped.get(stream, set())
        ready: list[Entry] = []
        while True:
            if last + 1 in held:
                ready.append(held.pop(last + 1))
            elif last + 1 in skipped:
                skipped.discard(last + 1)
                self.stats.skipped += 1
            else:
                break
            last += 1
        skipped.difference_update([s for s in skipped if s <= last])
        self._last[stream] = last
        self.stats.delivered += len(ready)
        self.stats.presence += sum(1 for entry in ready if isinstance(entry, Presence))
        return ready
