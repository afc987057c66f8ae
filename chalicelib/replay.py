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
"""

from __future__ import annotations

from collections.abc import Callable
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


def visible(messages: list[dict[str, Any]], without_presence: bool) -> list[dict[str, Any]]:
    """A page's messages as a reader sees them: without the presence events the room logged
    in its stream when the reader may not see its presence (the page's ``next``, ``last``
    and the resume's ``replayed`` count still describe the stream)."""
    if not without_presence:
        return messages
    return [m for m in messages if m.get("type") != "presence"]


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


class Replayer:
    """Answers ``resume`` and ``history`` for one connection's identity and rooms."""

    def __init__(self, log: MessageLog, max_replay: int = 500) -> None:
        self._log = log
        self._max_replay = max_replay

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
        for stream, after in command.streams:
            reason = refusal(stream, user_id, rooms)
            if reason is not None:
                streams[stream] = {"after": after, "refused": reason}
                continue
            page = self._log.read(stream, after, self._max_replay)
            for message in visible(page.messages, stream in without_presence):
                if post(protocol.encode(_replayed(message))) is Outcome.GONE:
                    return None
            summary: dict[str, Any] = {
                "after": after,
                "last": page.last,
                "replayed": len(page.messages),
                # More than max_replay, or seqs past retention: page on with history.
                "truncated": page.truncated or page.next is not None,
            }
            if page.truncated:
                summary["oldest"] = page.oldest
            if page.next is not None:
                summary["next"] = page.next
            if page.skipped:
                summary["skipped"] = page.skipped
            streams[stream] = summary
        return protocol.resumed_frame(command.ref, streams)

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
        page = self._log.read(command.stream, command.after, command.limit)
        return protocol.history_frame(
            command.ref,
            command.stream,
            visible(page.messages, without_presence),
            page.next,
            **page_fields(page),
        )
