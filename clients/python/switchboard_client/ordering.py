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
    event: str = "message"  # the structured send's name (the event-model issue)
    data: Any = None  # its JSON payload
    epoch: str | None = None  # the stream log's incarnation, when the server gives one
    ephemeral: bool = False  # not logged: seq 0, never replayed, never deduplicated
    echo: bool = False  # the client's own send, presented once (the ``echo`` option)

    @classmethod
    def from_frame(cls, frame: Mapping[str, Any]) -> Message | None:
        """The message of a server ``message`` frame, or None when it has no usable stream/seq
        (an ephemeral message has seq 0: it is not logged)."""
        position = _position(frame)
        ephemeral = frame.get("ephemeral") is True
        if position is None and not ephemeral:
            return None
        stream, seq = position or (str(frame.get("stream", "")), 0)
        room = frame.get("room")
        sent_at = frame.get("sentAt")
        event = frame.get("event")
        epoch = frame.get("epoch")
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
            event=event if isinstance(event, str) else "message",
            data=frame.get("data"),
            epoch=epoch if isinstance(epoch, str) else None,
            ephemeral=ephemeral,
            echo=frame.get("echo") is True,
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
    info: Any = None  # the member's ``info`` claim (the event-model issue), when given

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
                info=frame.get("info"),
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


@dataclass(frozen=True)
class Gap:
    """Seqs ``from_seq``..``to_seq`` of ``stream`` are past retention: they will never arrive."""

    stream: str
    from_seq: int
    to_seq: int


@dataclass(frozen=True)
class Reset:
    """``stream``'s log was recreated (a new ``epoch``): its cursor restarted at 0."""

    stream: str
    epoch: str | None
    previous_epoch: str | None


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
    own: int = 0  # the client's own sends, never presented as incoming
    resets: int = 0  # streams whose log was recreated (a new epoch)


class Sequencer:
    """Per stream, the last seq handed to the app and what waits behind a gap (the JavaScript
    client's ``StreamOrder``; both names work).

    ``known`` is where each stream starts (from a ``SeqStore``: a seq, or ``{"epoch", "seq"}``).
    A stream seen for the first time starts at its floor (``begin``: its last seq when the
    client joined) or at its first message: the app gets what arrives from then on, not the
    stream's whole past (seed ``known`` with ``{stream: 0}`` to start from its beginning).
    """

    def __init__(self, known: Mapping[str, Any] | None = None) -> None:
        self._last: dict[str, int] = {}
        self._floor: dict[str, int] = {}
        self._epochs: dict[str, str] = {}
        for stream, value in (known or {}).items():
            seq, epoch = _stored(value)
            if seq is not None:
                self._last[stream] = seq
                if epoch is not None:
                    self._epochs[stream] = epoch
        self._held: dict[str, dict[int, Entry]] = {}
        self._skipped: dict[str, set[int]] = {}
        self.stats = Stats()

    def last(self) -> dict[str, int]:
        """The last seq handed on (else the floor), per stream."""
        return {**self._floor, **self._last}

    def cursor(self, stream: str) -> int | None:
        return self._last.get(stream, self._floor.get(stream))

    def epoch_of(self, stream: str) -> str | None:
        return self._epochs.get(stream)

    def waiting(self) -> dict[str, int]:
        """Streams with entries held behind a gap -> the seq to fetch after."""
        return {stream: self._last[stream] for stream, held in self._held.items() if held}

    def begin(self, stream: str, seq: int) -> None:
        """Where a new stream starts when nothing is stored: its last seq when the client joined.
        Soft: an entry at or below it that still arrives live (overtaken on the way) is
        delivered; the floor decides where a resume starts."""
        if stream not in self._last and stream not in self._floor and seq >= 0:
            self._floor[stream] = seq

    def _start(self, stream: str, seq: int) -> int:
        floor = self._floor.get(stream)
        return self._last.setdefault(
            stream, floor if floor is not None and seq > floor else seq - 1
        )

    def offer(self, message: Entry, from_history: bool = False) -> list[Entry]:
        """Take one received entry (message or presence event); the entries now deliverable,
        in order."""
        stream, seq = message.stream, message.seq
        last = self._start(stream, seq)
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

    def own(self, stream: str, seq: int, entry: Entry | None = None) -> list[Entry]:
        """The client's own send was logged at ``seq``: never delivered as incoming. With
        ``entry`` (the ``echo`` option) that entry is delivered in its place, once, in stream
        order; without, the seq is passed over."""
        if seq < 1:
            return []
        last = self._start(stream, seq)
        if seq <= last:
            return []
        self.stats.own += 1
        self._held.setdefault(stream, {}).pop(seq, None)
        if entry is not None:
            return self.offer(entry)
        self._skipped.setdefault(stream, set()).add(seq)
        self.stats.skipped -= 1  # counted as own, not as a failed write
        return self._drain(stream)

    def epoch(self, stream: str, epoch: object) -> Reset | None:
        """The server says ``stream`` is in ``epoch``. Unknown so far: adopted. Another one: the
        log was recreated and numbers from 1 again: the cursor restarts (see ``reset``)."""
        if not isinstance(epoch, str):
            return None
        known = self._epochs.get(stream)
        if known is None:
            self._epochs[stream] = epoch
            return None
        return None if known == epoch else self.reset(stream, epoch)

    def reset(self, stream: str, epoch: str | None) -> Reset:
        """Restart ``stream``'s cursor at 0 in ``epoch``; what was held of the old log goes."""
        previous = self._epochs.get(stream)
        if epoch is None:
            self._epochs.pop(stream, None)
        else:
            self._epochs[stream] = epoch
        self._last[stream] = 0
        self._floor.pop(stream, None)
        self._held.pop(stream, None)
        self._skipped.pop(stream, None)
        self.stats.resets += 1
        return Reset(stream, epoch, previous)

    def skip(self, stream: str, seqs: list[int]) -> list[Entry]:
        """``seqs`` of ``stream`` will never hold a message: stop waiting for them."""
        last = self._last.get(stream)
        if last is None:
            return []
        self._skipped.setdefault(stream, set()).update(s for s in seqs if s > last)
        return self._drain(stream)

    def advance(self, stream: str, seq: int) -> list[Entry]:
        """Everything of ``stream`` up to ``seq`` is gone (past retention): move past it."""
        last = self._last.get(stream, self._floor.get(stream, 0))
        self._last.setdefault(stream, last)
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


# The JavaScript client's name for the same class.
StreamOrder = Sequencer


def _stored(value: object) -> tuple[int | None, str | None]:
    """A stored cursor: a bare seq, or ``{"epoch": str, "seq": int}``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, None
    if isinstance(value, Mapping):
        seq, epoch = value.get("seq"), value.get("epoch")
        if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0:
            return seq, epoch if isinstance(epoch, str) else None
    return None, None
