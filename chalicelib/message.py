"""A chat message as it is logged and sent: a typed record instead of a frame dict.

The wire frame (``{"type":"message","id",..,"from",..,"scope",..,"text",..,"sentAt",..,
"room"?,"stream"?,"seq"?}``, the AsyncAPI document's ``message``) is what ``to_frame`` writes
and ``from_frame`` reads; the rest of chalicelib reads attributes, never string keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from chalicelib import protocol
from chalicelib.protocol import Scope


@dataclass(frozen=True)
class Message:
    """One message. ``stream`` and ``seq`` are set once the message log has numbered it
    (``logged``); a message is never sent before that."""

    id: str
    sender: str
    scope: Scope
    text: str
    sent_at: int
    room: str | None = None
    stream: str | None = None
    seq: int | None = None

    @classmethod
    def new(cls, sender: str, scope: Scope, text: str, room: str | None = None) -> Message:
        """A fresh message (a new id, sent now), not yet logged."""
        return cls(uuid.uuid4().hex, sender, scope, text, protocol.now_ms(), room)

    def logged(self, stream: str, seq: int) -> Message:
        return replace(self, stream=stream, seq=seq)

    @property
    def position(self) -> tuple[str, int]:
        """``(stream, seq)``: where the log keeps it (a logged message only)."""
        if self.stream is None or self.seq is None:
            raise ValueError("the message has not been logged")
        return self.stream, self.seq

    def to_frame(self) -> dict[str, Any]:
        frame = protocol.message_frame(self.sender, self.scope, self.text, self.room, self.sent_at)
        frame["id"] = self.id
        if self.stream is not None and self.seq is not None:
            frame.update(stream=self.stream, seq=self.seq)
        return frame

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Message:
        """Read a frame ``to_frame`` wrote (as the message log returns it). Raises
        ValueError on anything else."""
        try:
            seq = frame.get("seq")
            return cls(
                id=str(frame["id"]),
                sender=str(frame["from"]),
                scope=Scope(frame["scope"]),
                text=str(frame["text"]),
                sent_at=int(frame["sentAt"]),
                room=frame.get("room"),
                stream=frame.get("stream"),
                seq=int(seq) if seq is not None else None,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a message frame: {exc!r}") from None
