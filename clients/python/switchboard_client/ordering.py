"""Ordering and dedupe without I/O: messages in, the ones the app may see now out.

The server numbers every message of a stream (``room:<name>``, ``user:<id>``, ``all``) with a
``seq``; a message may arrive twice (live and replayed) or overtake another (two Lambdas fanning
out at once). ``Sequencer`` hands each ``(stream, seq)`` on once, in seq order per stream: a
message after a gap is held until the gap is filled, declared skipped (a seq whose write failed
never holds a message) or declared gone (past retention). Fetching what is missing is the
client's job (``history``); this class only says which streams wait and from which seq.
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
        stream, seq = frame.get("stream"), frame.get("seq")
        if not isinstance(stream, str) or isinstance(seq, bool) or not isinstance(seq, int):
            return None
        if seq < 1:
            return None
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


@dataclass
class Stats:
    """What ordering did so far (for apps' metrics and the tests)."""

    delivered: int = 0
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
        self._held: dict[str, dict[int, Message]] = {}
        self._skipped: dict[str, set[int]] = {}
        self.stats = Stats()

    def last(self) -> dict[str, int]:
        """The last seq handed on, per stream."""
        return dict(self._last)

    def waiting(self) -> dict[str, int]:
        """Streams with messages held behind a gap -> the seq to fetch after."""
        return {stream: self._last[stream] for stream, held in self._held.items() if held}

    def offer(self, message: Message, from_history: bool = False) -> list[Message]:
        """Take one received message; the messages now deliverable, in order."""
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

    def skip(self, stream: str, seqs: list[int]) -> list[Message]:
        """``seqs`` of ``stream`` will never hold a message: stop waiting for them."""
        last = self._last.get(stream)
        if last is None:
            return []
        self._skipped.setdefault(stream, set()).update(s for s in seqs if s > last)
        return self._drain(stream)

    def advance(self, stream: str, seq: int) -> list[Message]:
        """Everything of ``stream`` up to ``seq`` is gone (past retention): move past it."""
        last = self._last.get(stream, 0)
        if seq > last:
            self.stats.gone += seq - last
            self._last[stream] = seq
            held = self._held.get(stream, {})
            for old in [s for s in held if s <= seq]:
                del held[old]
        return self._drain(stream)

    def _drain(self, stream: str) -> list[Message]:
        last = self._last[stream]
        held = self._held.get(stream, {})
        skipped = self._skipped.get(stream, set())
        ready: list[Message] = []
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
        return ready
