"""Resume and history: what a client missed, read back from the message log.

Authorization is the same for both: a ``room:`` stream only while the connection is a member
of the room, a ``user:`` stream only the caller's own, ``all`` always. A resume replays each
allowed stream as ordinary ``message`` frames with ``"replayed": true``, in seq order, up to
``max_replay`` per stream, then answers one ``resumed`` frame; refused streams are listed there
with a reason and the others still resume.

Replayed frames go to the one connection one after another (posts to one connection run in
order; concurrent posts could overtake each other), so a resume of ``n`` messages costs ``n``
sequential ``@connections`` calls: about ``n`` x 10-20 ms on AWS, which is why a resume stops
at ``max_replay`` per stream and the client pages the rest with ``history``.

What one frame may cost is bounded (``Bounds``, from the ``REPLAY_MAX_*`` settings): at most
``max_streams`` readable streams (the rest answer ``refused``), ``max_messages`` messages and
``max_bytes`` bytes of frames across all its streams (at least one message, so a resume always
progresses). A post that fails (a 429 once retries ran out: a client whose buffer is full)
ends the frame's replay there, rather than holding the handler through every remaining post. A stream cut short by these answers ``truncated`` with ``next``, as one cut short
by ``max_replay``; a stream reached after the frame's budget is spent costs one GetItem of its
head (its ``last``, which a client resuming "from now" needs). The user's replay budget across
frames and containers is ``Limits.take_replay`` (limits.py), charged by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import protocol
from chalicelib.management_api import Outcome
from chalicelib.message_log import MessageLog, Page
from chalicelib.protocol import History, Resume


def refusal(stream: str, user_id: str, rooms: frozenset[str]) -> str | None:
    """Why this connection may not read ``stream``, or None when it may."""
    parsed = protocol.parse_stream(stream)
    if parsed is None:
        return "not a stream"
    scope, name = parsed
    if scope == "room" and name not in rooms:
        return f"join {name!r} first"
    if scope == "user" and name != user_id:
        return "only your own user stream"
    return None


def _replayed(message: dict[str, Any]) -> dict[str, Any]:
    return {**message, "replayed": True}


def page_fields(page: Page) -> dict[str, Any]:
    """What a history answer says about a page besides its messages."""
    fields: dict[str, Any] = {"last": page.last}
    if page.skipped:
        fields["skipped"] = page.skipped
    if page.truncated:
        fields["truncated"] = True
        fields["oldest"] = page.oldest
    return fields


@dataclass(frozen=True)
class Bounds:
    """What one ``resume`` frame may cost (see the module docstring)."""

    max_streams: int = 52
    max_messages: int = 200
    max_bytes: int = 262144


class Replayer:
    """Answers ``resume`` and ``history`` for one connection's identity and rooms."""

    def __init__(self, log: MessageLog, max_replay: int = 500, bounds: Bounds = Bounds()) -> None:
        self._log = log
        self._max_replay = max_replay
        self.bounds = bounds

    def resume(
        self,
        command: Resume,
        user_id: str,
        rooms: frozenset[str],
        post: Callable[[bytes], Outcome],
    ) -> dict[str, Any] | None:
        """Replay every allowed stream through ``post``; the ``resumed`` frame, or None when
        the connection went away meanwhile (nothing more can reach it)."""
        streams: dict[str, dict[str, Any]] = {}
        bounds = self.bounds
        read = 0  # readable streams read so far
        left_messages, left_bytes = bounds.max_messages, bounds.max_bytes
        for stream, after in command.streams:
            reason = refusal(stream, user_id, rooms)
            if reason is None and read >= bounds.max_streams:
                reason = f"at most {bounds.max_streams} streams per resume frame"
            if reason is not None:
                streams[stream] = {"after": after, "refused": reason}
                continue
            read += 1
            if left_messages <= 0 or left_bytes <= 0:
                streams[stream] = self._deferred(stream, after)
                continue
            page = self._log.read(stream, after, min(self._max_replay, left_messages))
            sent = 0
            cut: int | None = None  # the seq the frame's byte bound stopped before
            for message in page.messages:
                data = protocol.encode(_replayed(message))
                if len(data) > left_bytes and left_bytes < bounds.max_bytes:
                    cut = int(message["seq"])
                    left_bytes = 0
                    break
                outcome = post(data)
                if outcome is Outcome.GONE:
                    return None
                if outcome is not Outcome.DELIVERED:
                    # A 429 after the retries (the client's buffer is full: it is not reading)
                    # or another failure: the rest of the frame would fail the same way, each
                    # post holding the handler through its retries. Stop; the client pages on.
                    cut = int(message["seq"])
                    left_messages = 0
                    break
                sent += 1
                left_messages -= 1
                left_bytes -= len(data)
            summary: dict[str, Any] = {
                "after": after,
                "last": page.last,
                "replayed": sent,
                # More than fits, or seqs past retention: page on with history.
                "truncated": page.truncated or page.next is not None or cut is not None,
            }
            if page.truncated:
                summary["oldest"] = page.oldest
            if cut is not None:
                summary["next"] = cut
            elif page.next is not None:
                summary["next"] = page.next
            if page.skipped:
                summary["skipped"] = (
                    page.skipped if cut is None else [s for s in page.skipped if s < cut]
                )
            streams[stream] = summary
        return protocol.resumed_frame(command.ref, streams)

    def _deferred(self, stream: str, after: int) -> dict[str, Any]:
        """A readable stream reached after the frame's message or byte bound was spent: its
        head only (one GetItem), ``truncated`` with ``next`` when it holds more."""
        last, _ = self._log.last_seq(stream)
        summary: dict[str, Any] = {"after": after, "last": last, "replayed": 0}
        summary["truncated"] = last > after
        if last > after:
            summary["next"] = after + 1
        return summary

    def history(self, command: History, user_id: str, rooms: frozenset[str]) -> dict[str, Any]:
        reason = refusal(command.stream, user_id, rooms)
        if reason is not None:
            return protocol.error_frame("forbidden", f"{command.stream}: {reason}", command.ref)
        page = self._log.read(command.stream, command.after, command.limit)
        return protocol.history_frame(
            command.ref, command.stream, page.messages, page.next, **page_fields(page)
        )
