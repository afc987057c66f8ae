"""Message: the typed record of a chat message and its wire frame."""

from __future__ import annotations

import pytest

from chalicelib import protocol
from chalicelib.message import Message
from chalicelib.protocol import Scope


def test_a_logged_message_round_trips_through_its_frame() -> None:
    message = Message.new("u_1", Scope.ROOM, "hi", "lobby").logged("room:lobby", 7, "e1")
    frame = message.to_frame()
    assert list(frame) == [
        "type", "id", "from", "scope", "event", "text", "sentAt", "room", "stream", "seq", "epoch",
    ]  # fmt: skip
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


def test_a_structured_message_carries_event_and_data_through_its_frame() -> None:
    data = {"id": 42, "lines": [1.5, None, True]}
    message = Message.new("u_1", Scope.ALL, None, event="order.updated", data=data)
    logged = message.logged("all", 3, "e1")
    frame = logged.to_frame()
    assert (frame["event"], frame["data"], "text" in frame, frame["epoch"]) == (
        "order.updated", data, False, "e1",
    )  # fmt: skip
    assert Message.from_frame(frame) == logged


def test_an_ephemeral_message_has_no_position_and_says_so() -> None:
    message = Message.new("u_1", Scope.ROOM, "t", "lobby", event="typing", ephemeral=True)
    frame = message.to_frame()
    assert frame["ephemeral"] is True and not {"stream", "seq", "epoch"} & set(frame)
    assert Message.from_frame(frame) == message


def test_a_frame_logged_before_events_reads_as_a_plain_message() -> None:
    old = {"type": "message", "id": "x", "from": "u", "scope": "all", "text": "t", "sentAt": 1,
           "stream": "all", "seq": 1}  # fmt: skip
    message = Message.from_frame(old)
    assert (message.event, message.data, message.epoch) == ("message", None, None)
