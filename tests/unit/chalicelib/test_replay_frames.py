"""chalicelib/replay_frames.py: a stream's missed messages packed into ``replay`` frames."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import protocol
from chalicelib.replay_frames import REPLAY_FRAME_BYTES, replay_frame, replay_frames


def logged(seq: int, text: str = "hello") -> dict[str, Any]:
    frame = protocol.message_frame("u_1", protocol.Scope.ROOM, text, "lobby", sent_at=1)
    return {**frame, "stream": "room:lobby", "seq": seq, "epoch": "e1"}


def decoded(frames: list[bytes]) -> list[dict[str, Any]]:
    return [json.loads(f) for f in frames]


def test_five_hundred_short_messages_take_a_handful_of_frames_in_seq_order() -> None:
    messages = [logged(seq) for seq in range(1, 501)]
    frames = list(replay_frames("room:lobby", "e1", messages))
    size = len(protocol.encode(messages[0]))
    # As few frames as 32 KB allows (~200 bytes each: 500 messages in 4 frames, not 500).
    assert len(frames) == -(-500 * (size + 1) // REPLAY_FRAME_BYTES) <= 5
    assert all(len(f) <= REPLAY_FRAME_BYTES for f in frames)
    bodies = decoded(frames)
    assert all(
        {k: v for k, v in b.items() if k != "messages"}
        == {"type": "replay", "stream": "room:lobby", "epoch": "e1"}
        for b in bodies
    )
    assert [m for b in bodies for m in b["messages"]] == messages


def test_a_message_larger_than_a_frame_goes_alone_in_its_own() -> None:
    big = logged(2, "x" * (REPLAY_FRAME_BYTES + 10))
    frames = list(replay_frames("room:lobby", "e1", [logged(1), big, logged(3)]))
    assert [[m["seq"] for m in b["messages"]] for b in decoded(frames)] == [[1], [2], [3]]
    assert len(frames[1]) > REPLAY_FRAME_BYTES


def test_frames_are_exactly_the_encoding_of_the_replay_frame() -> None:
    messages = [logged(1, "héllo"), logged(2)]
    [frame] = replay_frames("room:lobby", None, messages)
    assert frame == protocol.encode(replay_frame("room:lobby", None, messages))


def test_nothing_to_replay_is_no_frame() -> None:
    assert list(replay_frames("all", "e", [])) == []


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=700), max_size=40),
    limit=st.integers(min_value=150, max_value=2000),
)
def test_packing_keeps_order_respects_the_limit_and_uses_the_fewest_frames(
    sizes: list[int], limit: int
) -> None:
    messages = [logged(seq, "x" * size) for seq, size in enumerate(sizes, start=1)]
    frames = list(replay_frames("room:lobby", "e1", messages, max_bytes=limit))
    bodies = decoded(frames)
    assert [m for b in bodies for m in b["messages"]] == messages
    for frame, body in zip(frames, bodies, strict=True):
        assert len(frame) <= limit or len(body["messages"]) == 1
    # Greedy is optimal for an ordered split: no two neighbouring frames could be one.
    for first, second in zip(bodies, bodies[1:], strict=False):
        merged = replay_frame("room:lobby", "e1", first["messages"] + second["messages"][:1])
        assert len(protocol.encode(merged)) > limit
