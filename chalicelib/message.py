"""A chat message as it is logged and sent: a typed record instead of a frame dict.

The wire frame (``{"type":"message","id",..,"from",..,"scope",..,"event",..,"text"?,..,
"data"?,..,"sentAt",..,"room"?,"stream"?,"seq"?,"epoch"?,"ephemeral"?}``, the AsyncAPI
document's ``message``) is what ``to_frame`` writes and ``from_frame`` reads; the rest of
chalicelib reads attributes, never string keys.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from chalicelib import protocol
from chalicelib.protocol import DEFAULT_EVENT, Scope


@dataclass(frozen=True)
class Message:
    """One message. ``stream``, ``seq`` and ``epoch`` are set once the message log has
    numbered it (``logged``); a message is never sent before that, unless it is
    ``ephemeral`` (never logged: it has none of the three). ``text``, ``data`` or both are
    set (``data`` None: the sender sent none); ``event`` names it."""

    id: str
    sender: str
    scope: Scope
    text: str | None
    sent_at: int
    room: str | None = None
    stream: str | None = None
    seq: int | None = None
    event: str = DEFAULT_EVENT
    data: Any = None
    epoch: str | None = None
    ephemeral: bool = False

    @classmethod
    def new(
        cls,
        sender: str,
        scope: Scope,
        text: str | None,
        room: str | None = None,
        *,
        event: str = DEFAULT_EVENT,
        data: Any = None,
        ephemeral: bool = False,
    ) -> Message:
        """A fresh message (a new id, sent now), not yet logged."""
        return cls(
            uuid.uuid4().hex,
            sender,
            scope,
            text,
            protocol.now_ms(),
            room,
            event=event,
            data=data,
            ephemeral=ephemeral,
        )

    @classmethod
    def of(cls, sender: str, scope: Scope, body: protocol.Body, room: str | None = None) -> Message:
        """A fresh message carrying a parsed send's ``body``."""
        return cls.new(
            sender,
            scope,
            body.text,
            room,
            event=body.event,
            data=body.data,
            ephemeral=body.ephemeral,
        )

    def logged(self, stream: str, seq: int, epoch: str | None = None) -> Message:
        return replace(self, stream=stream, seq=seq, epoch=epoch)

    @property
    def body(self) -> protocol.Body:
        return protocol.Body(self.text, self.event, self.data, self.ephemeral)

    @property
    def position(self) -> tuple[str, int]:
        """``(stream, seq)``: where the log keeps it (a logged message only)."""
        if self.stream is None or self.seq is None:
            raise ValueError("the message has not been logged")
        return self.stream, self.seq

    def to_frame(self) -> dict[str, Any]:
        frame = protocol.message_frame(
            self.sender,
            self.scope,
            self.text,
            self.room,
            self.sent_at,
            event=self.event,
            data=self.data,
            ephemeral=self.ephemeral,
        )
        frame["id"] = self.id
        if self.stream is not None and self.seq is not None:
            frame.update(stream=self.stream, seq=self.seq)
            if self.epoch is not None:
                frame["epoch"] = self.epoch
        return frame

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Message:
        """Read a frame ``to_frame`` wrote (as the message log returns it). Raises
        ValueError on anything else. A frame logged before events existed has no ``event``
        (it was a ``message``) and no ``epoch``."""
        try:
            seq = frame.get("seq")
            text = frame.get("text")
            return cls(
                id=str(frame["id"]),
                sender=str(frame["from"]),
                scope=Scope(frame["scope"]),
                text=None if text is None else str(text),
                sent_at=int(frame["sentAt"]),
                room=frame.get("room"),
                stream=frame.get("stream"),
                seq=int(seq) if seq is not None else None,
                event=str(frame.get("event", DEFAULT_EVENT)),
                data=frame.get("data"),
                epoch=frame.get("epoch"),
                ephemeral=frame.get("ephemeral") is True,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a message frame: {exc!r}") from None
