"""Resume and history: what a client missed, read back from the message log.

Authorization is the same for both: a ``room:`` stream only while the connection is a member
of the room, a ``user:`` stream only the caller's own, ``all`` always. Refused streams of a
resume are listed in its ``resumed`` answer with a reason and the others still resume.

**Resume.** Each allowed stream's missed messages (up to ``max_replay``) go out in seq order,
packed into ``replay`` frames of at most 32 KB (``replay_frames.py``), one stream after the
other, then one ``resumed`` frame. The frames go to the one connection one after another
(posts to one connection are delivered in the order they are made; concurrent posts could
overtake each other), so the wire order within a stream's replay is its seq order. A resume
of ``n`` short messages costs about ``n * 200 B / 32 KB`` posts instead of ``n``.

**Epochs.** A client's cursor names the stream's epoch it was numbered in. When that is not
the stream's epoch now (the log was emptied and the stream numbered anew), or the client's seq
is past the stream's last one (the same, for a client that sent a bare number; but not
``MAX_SEQ``, 2^53, which clients send to start following a stream from now), its seqs mean
nothing here. Nothing of that stream is replayed; its ``resumed`` entry says ``"reset": true``
with the current epoch and ``last`` (and ``next`` 1, ``truncated``, when the new numbering
holds anything), so the client restarts its cursor at the new epoch and pages the stream with
``history`` from its start, instead of discarding the new numbering's messages as duplicates.
Why not replay it at once: the replay frames would reach the client before the ``resumed``
that explains them, as entries of an epoch it does not know yet; a client learns of the reset
first this way, and one ``history`` request reads the same messages.

**Bounds.** What one frame may cost is bounded (``Bounds``, from the ``REPLAY_MAX_*``
settings): at most ``max_streams`` readable streams (the rest answer ``refused``),
``max_messages`` messages and ``max_bytes`` bytes of messages across all its streams (at least
one message, so a resume always progresses). A stream cut short by these answers ``truncated``
with ``next``, as one cut short by ``max_replay``; a stream reached after the frame's budget is
spent costs its head read only. A post that fails (a 429 once retries ran out: a client whose
buffer is full) ends the frame's replay there (the stream answers ``truncated`` from the
first seq of its page), rather than holding the handler through every remaining post. The
user's replay budget across frames and containers is ``Limits.take_replay`` (limits.py),
charged by the caller.

**History.** One ``history`` frame per page, forward from ``after`` or backwards (``latest``,
``before``; see ``MessageLog.read_before``). A page is cut so its frame stays within the
128 KB post limit; ``next``/``prev`` then point at what was left out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chalicelib import protocol
from chalicelib.management_api import Outcome
from chalicelib.message_log import Head, MessageLog, Page
from chalicelib.protocol import Cursor, History, Resume
from chalicelib.replay_frames import REPLAY_FRAME_BYTES, replay_frames


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


def visible(messages: list[dict[str, Any]], without_presence: bool) -> list[dict[str, Any]]:
    """A page's messages as a reader sees them: without the presence events the room logged
    in its stream when the reader may not see its presence (the page's ``next``, ``last``
    and the resume's ``replayed`` count still describe the stream)."""
    if not without_presence:
        return messages
    return [m for m in messages if m.get("type") != "presence"]


def page_fields(page: Page) -> dict[str, Any]:
    """What a history answer says about a page besides its messages."""
    fields: dict[str, Any] = {"last": page.last, "epoch": page.epoch}
    if page.skipped:
        fields["skipped"] = page.skipped
    if page.truncated:
        fields["truncated"] = True
        fields["oldest"] = page.oldest
    return fields


def is_stale(cursor: Cursor, epoch: str | None, last: int) -> bool:
    """Whether a client's cursor belongs to another numbering of the stream than the one
    whose ``epoch`` and ``last`` seq the log holds now."""
    if cursor.epoch is not None and cursor.epoch != epoch:
        return True
    if cursor.seq >= protocol.MAX_SEQ:
        return False  # "from now": the clients' cursor for a stream they start following
    return cursor.seq > last  # a bare number past the end: the log was reset under it


def reset_summary(head: Head) -> dict[str, Any]:
    """The ``resumed`` entry of a stream whose cursor is from another numbering: the current
    epoch and last seq, and where to page the new numbering from (seq 1) when it holds any."""
    summary: dict[str, Any] = {
        "after": 0,
        "epoch": head.epoch,
        "last": head.last,
        "replayed": 0,
        "truncated": head.last > 0,
        "reset": True,
    }
    if head.last > 0:
        summary["next"] = 1
    return summary


def fit_forward(
    messages: list[dict[str, Any]], budget: int
) -> tuple[list[dict[str, Any]], int | None]:
    """The longest prefix of ``messages`` whose encoding fits ``budget`` bytes (at least one
    message: the parser keeps each under the post limit), and the seq of the first message
    left out (None when all fit)."""
    used = 0
    for index, message in enumerate(messages):
        used += len(protocol.encode(message)) + 1
        if used > budget and index > 0:
            return messages[:index], int(message["seq"])
    return messages, None


@dataclass(frozen=True)
class Bounds:
    """What one ``resume`` frame may cost (see the module docstring). The defaults bound
    nothing; ``Switchboard`` passes the ``REPLAY_MAX_*`` settings."""

    max_streams: int = protocol.MAX_RESUME_STREAMS
    max_messages: int = 2**31
    max_bytes: int = 2**62


@dataclass
class _Left:
    """What is left of one resume frame's bounds as its streams are replayed."""

    streams: int
    messages: int
    bytes: int
    first: bool = True  # nothing replayed yet: the first message always fits


class Replayer:
    """Answers ``resume`` and ``history`` for one connection's identity and rooms."""

    def __init__(
        self,
        log: MessageLog,
        max_replay: int = 500,
        frame_bytes: int = REPLAY_FRAME_BYTES,
        page_bytes: int = protocol.MAX_PAYLOAD_BYTES - protocol.FRAME_ENVELOPE_BYTES,
        bounds: Bounds | None = None,
    ) -> None:
        self._log = log
        self._max_replay = max_replay
        self.bounds = bounds or Bounds()
        self._frame_bytes = frame_bytes
        self._page_bytes = page_bytes

    def resume(
        self,
        command: Resume,
        user_id: str,
        rooms: frozenset[str],
        post: Callable[[bytes], Outcome],
        without_presence: frozenset[str] = frozenset(),
    ) -> dict[str, Any] | None:
        """Replay every allowed stream through ``post``; the ``resumed`` frame, or None when
        the connection went away meanwhile (nothing more can reach it). The streams in
        ``without_presence`` are replayed without their presence events (a member who may not
        see the room's presence: permissions)."""
        streams: dict[str, dict[str, Any]] = {}
        bounds = self.bounds
        left = _Left(bounds.max_streams, bounds.max_messages, bounds.max_bytes)
        for cursor in command.streams:
            reason = refusal(cursor.stream, user_id, rooms)
            if reason is None and left.streams <= 0:
                reason = f"at most {bounds.max_streams} streams per resume frame"
            if reason is not None:
                streams[cursor.stream] = {"after": cursor.seq, "refused": reason}
                continue
            left.streams -= 1
            summary = self._replay(cursor, post, left, cursor.stream in without_presence)
            if summary is None:
                return None
            streams[cursor.stream] = summary
        return protocol.resumed_frame(command.ref, streams)

    def _replay(
        self,
        cursor: Cursor,
        post: Callable[[bytes], Outcome],
        left: _Left,
        without_presence: bool = False,
    ) -> dict[str, Any] | None:
        """Replay one stream from ``cursor`` within what is ``left`` of the frame's bounds;
        its ``resumed`` entry, None if the connection is gone. ``without_presence``: the reader
        may not see the room's presence events."""
        head = self._log.head(cursor.stream)
        if is_stale(cursor, head.epoch, head.last):
            return reset_summary(head)
        after = cursor.seq
        if left.messages <= 0 or left.bytes <= 0:  # the frame's bounds are spent: head only
            deferred: dict[str, Any] = {
                "after": after,
                "epoch": head.epoch,
                "last": head.last,
                "replayed": 0,
                "truncated": head.last > after,
            }
            if head.last > after:
                deferred["next"] = after + 1
            return deferred
        page = self._log.read(cursor.stream, after, min(self._max_replay, left.messages), head)
        messages, cut = fit_forward(visible(page.messages, without_presence), left.bytes)
        if messages and not left.first and len(protocol.encode(messages[0])) + 1 > left.bytes:
            # fit_forward keeps a first message whatever its size; only a frame's very first
            # message may pass the bytes left (so a resume always progresses).
            messages, cut = [], int(messages[0]["seq"])
        for frame in replay_frames(cursor.stream, page.epoch, messages, self._frame_bytes):
            outcome = post(frame)
            if outcome is Outcome.GONE:
                return None
            if outcome is not Outcome.DELIVERED:
                # A 429 after the retries (the client's buffer is full: it is not reading) or
                # another failure: the rest would fail the same way, each post holding the
                # handler through its retries. Stop the frame; the client pages with history.
                cut = int(messages[0]["seq"])
                messages = []
                left.messages = 0
                break
        if messages:
            left.first = False
            left.messages -= len(messages)
            left.bytes -= sum(len(protocol.encode(m)) + 1 for m in messages)
        if cut is not None:
            left.bytes = 0  # the next message did not fit: the frame's bytes are spent
        summary: dict[str, Any] = {
            "after": after,
            "epoch": page.epoch,
            "last": page.last,
            "replayed": len(messages),
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
        return summary

    def history(
        self,
        command: History,
        user_id: str,
        rooms: frozenset[str],
        without_presence: bool = False,
    ) -> dict[str, Any]:
        reason = refusal(command.stream, user_id, rooms)
        if reason is not None:
            return protocol.error_frame("forbidden", f"{command.stream}: {reason}", command.ref)
        page = self.page(command, without_presence)
        return protocol.history_frame(command.ref, command.stream, **page)

    def page(self, command: History, without_presence: bool = False) -> dict[str, Any]:
        """One history page as its frame (and the HTTP answer) carries it: ``messages``,
        ``next_seq`` and the page's fields. Shared by the WebSocket and HTTP routes."""
        if command.backwards:
            back = self._log.read_before(command.stream, command.before, command.limit)
            messages = visible(list(back.messages), without_presence)
            prev = back.prev
            # Keep the newest that fit: drop from the oldest end, and point prev past them.
            while len(messages) > 1 and _encoded_size(messages) > self._page_bytes:
                messages.pop(0)
                prev = int(messages[0]["seq"])
            fields = {"last": back.last, "epoch": back.epoch, "prev": prev}
            return {"messages": messages, "next_seq": back.next, **fields}
        page = self._log.read(command.stream, command.after, command.limit)
        messages, cut = fit_forward(visible(page.messages, without_presence), self._page_bytes)
        return {
            "messages": messages,
            "next_seq": cut if cut is not None else page.next,
            **page_fields(page),
        }


def _encoded_size(messages: list[dict[str, Any]]) -> int:
    return sum(len(protocol.encode(m)) + 1 for m in messages)
