"""Message: the typed record of a chat message and its wire frame."""

from __future__ import annotations

import pytest

from chalicelib import protocol
from chalicelib.message import Message
from chalicelib.protocol import Scope


def test_a_logged_message_round_trips_through_its_frame() -> None:
    message = Message.new("u_1", Scope.ROOM, "hi", "lobby").logged("room:lobby", 7)
    frame = message.to_frame()
    assert list(frame) == ["type", "id", "from", "scope", "text", "sentAt", "room", "stream", "seq"]
    assert (frame["type"], frame["from"], frame["scope"], frame["seq"]) == (
        "message",
        "u_1",
        "room",
        7,
    )
    assert Message.from_frame(frame) == message
    assert message.position == ("room:lobby", 7)


def test_the_frame_has_the_keys_message_frame_writes() -> None:
    plain = protocol.message_frame("u_1", Scope.ALL, "hi", sent_at=5)
    ours = Message.new("u_1", Scope.ALL, "hi").to_frame()
    assert list(ours) == list(plain) and "room" not in ours and "stream" not in ours


def test_an_unlogged_message_has_no_position_and_junk_is_refused() -> None:
    with pytest.raises(ValueError):
        _ = Message.new("u_1", Scope.ALL, "hi").position
    for junk in ({}, {"id": "x", "from": "u", "scope": "everyone", "text": "t", "sentAt": 1}):
        with pytest.raises(ValueError):
            Message.from_frame(junk)
