"""Batched replay, without I/O: a stream's missed messages packed into ``replay`` frames.

A resume used to post every missed message on its own: 500 messages were 500 sequential
``@connections`` calls. API Gateway meters WebSocket messages in 32 KB increments ("Messages
are metered in 32 KB increments", https://aws.amazon.com/api-gateway/pricing/), so a frame of
up to 32 KB costs what a 100-byte one does. ``replay_frames`` packs the messages, in the order
given (seq order), into as few frames of at most ``max_bytes`` as that order allows:

    {"type":"replay","stream":"room:lobby","epoch":"…","messages":[{…},{…},…]}

A message too large for a frame of that size by itself goes alone in its own frame (the
parser keeps every message under the 128 KB post limit with room for this envelope:
``protocol.FRAME_ENVELOPE_BYTES``). Filling frames greedily in order is optimal here: any
split that keeps the order needs at least as many frames.

Each message is encoded once, and a frame is the bytes of its messages joined; the size of a
frame is exact, not estimated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from chalicelib import protocol

# One metered message: https://aws.amazon.com/api-gateway/pricing/ (32 KB increments).
REPLAY_FRAME_BYTES = 32 * 1024


def _envelope(stream: str, epoch: str | None) -> tuple[bytes, bytes]:
    """The bytes before and after the messages of a replay frame."""
    empty = protocol.encode({"type": "replay", "stream": stream, "epoch": epoch, "messages": []})
    assert empty.endswith(b"[]}")  # "messages" is the last key
    return empty[:-2], b"]}"


def replay_frame(stream: str, epoch: str | None, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The frame ``replay_frames`` encodes, as a dict (for tests and documents)."""
    return {"type": "replay", "stream": stream, "epoch": epoch, "messages": messages}


def replay_frames(
    stream: str,
    epoch: str | None,
    messages: Iterable[dict[str, Any]],
    max_bytes: int = REPLAY_FRAME_BYTES,
) -> Iterator[bytes]:
    """Encoded ``replay`` frames carrying ``messages`` in the order given, each at most
    ``max_bytes`` unless it holds one message that is larger by itself."""
    head, tail = _envelope(stream, epoch)
    fixed = len(head) + len(tail)
    batch: list[bytes] = []
    size = fixed
    for message in messages:
        encoded = protocol.encode(message)
        added = len(encoded) + (1 if batch else 0)  # the comma before it
        if batch and size + added > max_bytes:
            yield head + b",".join(batch) + tail
            batch, size = [], fixed
            added = len(encoded)
        batch.append(encoded)
        size += added
    if batch:
        yield head + b",".join(batch) + tail
