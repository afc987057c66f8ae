"""The message log: every message of a stream, numbered, kept for replay and history.

A stream is ``room:<name>``, ``user:<userId>`` (direct messages to that user) or ``all``.
In the one table (``schema.json``), a stream is one partition:

- the head ``PK=STREAM#<stream> SK=HEAD`` holds ``last`` (the last seq allocated) and ``at``
  (ms, when it was allocated). It has no ttl: a stream's numbering never restarts, or a client
  holding seq 40 would skip the first 40 messages of the new numbering;
- one item per message ``PK=STREAM#<stream> SK=SEQ#<seq, 20 digits>`` with ``seq``, ``frame``
  (the JSON the clients receive), ``at`` and ``ttl`` (retention, ``HISTORY_TTL_SECONDS``).

``append`` allocates the next seq with an atomic ``UpdateItem ADD`` (one write, no read, no
transaction: DynamoDB serialises updates of one item, so seqs are unique and increase in the
order the log accepted them), then puts the message item. If that put fails, a tombstone
(``skipped``) is written in its place (best effort) and the caller sends nothing. A seq whose
writer died between the two writes leaves a hole: a hole followed by a message written more
than ``settle_seconds`` ago (or with the head older than that) can no longer fill, and readers
report it as skipped; a younger hole may be a write still in flight, and a read stops before
it (``next`` points at it), so a client never waits forever and never skips a live message.

Reads are Queries on the stream's partition (``SK BETWEEN``), oldest first; DynamoDB's TTL
deletes only eventually, so expired items are dropped here too. Cost: ``append`` is two
writes (1 WCU each for messages up to 1 KB, one more per extra KB); a read of ``n`` messages
is one Query of ``n`` items (0.5 RCU per 4 KB, eventually consistent) plus one GetItem of the
head (0.5 RCU).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.conditions import Attr

from chalicelib import keys
from chalicelib.keys import TTL
from chalicelib.table import Item, Query, Table, Update, live, query_all


class LogWriteError(Exception):
    """The message could not be logged; it must not be sent."""


@dataclass(frozen=True)
class Page:
    """Messages of one stream after a given seq, oldest first.

    ``messages`` are the frames as clients receive them (with ``stream`` and ``seq``);
    ``skipped`` lists seqs in the page's range that will never hold a message; ``last`` is the
    stream's last allocated seq; ``oldest`` the oldest seq still held (None when none is);
    ``truncated`` is True when seqs after ``after`` are gone for good (past retention);
    ``next`` is the seq to ask for next (pass ``next - 1`` as ``after``), None when the page
    reached ``last``; ``epoch`` is the stream's epoch (None for a stream never written).
    """

    stream: str
    after: int
    messages: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    last: int = 0
    oldest: int | None = None
    truncated: bool = False
    next: int | None = None
    epoch: str | None = None


@dataclass(frozen=True)
class Head:
    """A stream's counter: the ``last`` seq allocated, when (``at``, ms), and the ``epoch``
    it was created in (None, last 0: nothing was ever written to the stream)."""

    last: int = 0
    at: int = 0
    epoch: str | None = None


@dataclass(frozen=True)
class BackPage:
    """Messages of one stream before a seq (or the newest), oldest first. ``prev`` is the seq
    to pass as ``before`` for the page before this one (None when none is held); ``next``
    the first seq after the page when newer ones exist (page on forward from ``next - 1``)."""

    stream: str
    messages: list[dict[str, Any]] = field(default_factory=list)
    prev: int | None = None
    next: int | None = None
    last: int = 0
    epoch: str | None = None


def new_epoch() -> str:
    """A fresh epoch: 72 random bits, URL-safe (opaque to clients; ``protocol.EPOCH_RE``)."""
    return secrets.token_urlsafe(9)


class MessageLog:
    """Append and read the numbered messages of streams, over the table layer."""

    def __init__(
        self,
        table: Table,
        ttl_seconds: int = 86400,
        settle_seconds: float = 30.0,
    ) -> None:
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._settle_ms = int(settle_seconds * 1000)

    def _now_ms(self) -> int:
        return int(self._table.now() * 1000)

    # --- writes ---------------------------------------------------------------------------

    def append(self, stream: str, frame: dict[str, Any]) -> dict[str, Any]:
        """Number ``frame`` in ``stream`` and store it; the stored frame (with ``stream`` and
        ``seq``). Raises ``LogWriteError`` when it could not be stored: send nothing then."""
        now_ms = self._now_ms()
        try:
            seq, epoch = self._allocate(stream, now_ms)
        except Exception as exc:  # noqa: BLE001 - any failure means: not logged, send nothing
            raise LogWriteError(f"allocating a seq in {stream} failed: {exc}") from exc
        logged = {**frame, "stream": stream, "seq": seq, "epoch": epoch}
        item = self._item(stream, seq, now_ms)
        item["frame"] = json.dumps(logged, ensure_ascii=False, separators=(",", ":"))
        try:
            self._table.put(item)
        except Exception as exc:  # noqa: BLE001 - as above; the seq is marked skipped
            self._mark_skipped(stream, seq, now_ms)
            raise LogWriteError(f"storing seq {seq} of {stream} failed: {exc}") from exc
        return logged

    def _allocate(self, stream: str, now_ms: int) -> tuple[int, str]:
        """The next seq and the stream's epoch. The update that creates the head creates its
        epoch with it (``if_not_exists``); every later one keeps it: one write either way."""
        new = self._table.update(
            keys.head_key(stream),
            Update(set={"at": now_ms}, add={"last": 1}, set_if_absent={"epoch": new_epoch()}),
            # The whole head (a few attributes): UPDATED_NEW would have to be trusted to list
            # an attribute if_not_exists left as it was.
            returns="ALL_NEW",
        )
        head = new or {}
        return int(head["last"]), str(head["epoch"])

    def _item(self, stream: str, seq: int, now_ms: int) -> Item:
        return {
            **keys.message_key(stream, seq),
            "seq": seq,
            "at": now_ms,
            TTL: now_ms // 1000 + self._ttl_seconds,
        }

    def _mark_skipped(self, stream: str, seq: int, now_ms: int) -> None:
        item = self._item(stream, seq, now_ms)
        item["skipped"] = True
        try:
            self._table.put(item, condition=Attr("PK").not_exists())
        except Exception:  # noqa: BLE001 - best effort (a failed condition too): the hole settles as skipped later
            pass

    # --- reads ----------------------------------------------------------------------------

    def head(self, stream: str) -> Head:
        """The stream's counter; ``Head()`` (epoch None, last 0) for a stream never written.
        A read: it creates nothing."""
        item = self._table.get(keys.head_key(stream))
        if not item:
            return Head()
        epoch = item.get("epoch")
        return Head(int(item["last"]), int(item.get("at", 0)), str(epoch) if epoch else None)

    def last_seq(self, stream: str) -> tuple[int, int]:
        """The last allocated seq of ``stream`` and when (ms); (0, 0) for a new stream."""
        head = self.head(stream)
        return head.last, head.at

    def get(self, stream: str, seq: int) -> dict[str, Any] | None:
        """The logged frame of ``seq`` in ``stream``; None if it is unknown, skipped or past
        retention (a fan-out's continuation re-reads its message here: SQS carries no text)."""
        item = self._table.get(keys.message_key(stream, seq))
        if not item or "frame" not in item:
            return None
        if not live(item, self._table.now()):
            return None
        frame: dict[str, Any] = json.loads(item["frame"])
        return frame

    def read(self, stream: str, after: int, limit: int, head: Head | None = None) -> Page:
        """Up to ``limit`` messages of ``stream`` with seq > ``after``, oldest first. ``head``:
        the stream's head when the caller has just read it (one GetItem less)."""
        after = max(0, after)
        head = head if head is not None else self.head(stream)
        last, head_at, epoch = head.last, head.at, head.epoch
        if after >= last:
            return Page(stream, after, last=last, epoch=epoch)
        now_ms = self._now_ms()
        now_s = now_ms // 1000
        messages: list[dict[str, Any]] = []
        skipped: list[int] = []
        expected = after + 1  # the next seq this page must account for
        oldest: int | None = None
        truncated = False
        stop: int | None = None  # a young hole: a write that may still be in flight
        # The read starts at ``after`` itself when there is one: if that item is still held,
        # a hole right after it is a skipped seq, not the end of retention.
        anchored = False
        for item in self._items(stream, max(after, 1), last, limit):
            seq = int(item["seq"])
            at = int(item.get("at", 0))
            if seq == after:
                anchored = int(item.get(TTL, 0)) > now_s
                continue
            if int(item.get(TTL, 0)) <= now_s:
                # Past retention (TTL deletes eventually): gone for good, like a deleted one.
                truncated = truncated or not (messages or skipped or anchored)
                expected = seq + 1
                continue
            if seq > expected:
                if at > now_ms - self._settle_ms:
                    stop = expected
                    break
                if oldest is None and not anchored:
                    truncated = True  # the start is gone: retention (or a long-dead write)
                else:
                    skipped.extend(range(expected, seq))
            if oldest is None:
                oldest = seq
            if item.get("skipped"):
                skipped.append(seq)
            else:
                messages.append(json.loads(item["frame"]))
            expected = seq + 1
            if len(messages) >= limit:
                break
        else:
            if expected <= last:  # holes at the end, up to the head
                if head_at > now_ms - self._settle_ms:
                    stop = expected
                elif oldest is None and not anchored:
                    truncated = True
                    expected = last + 1
                else:
                    skipped.extend(range(expected, last + 1))
                    expected = last + 1
        nxt = stop if stop is not None else (expected if expected <= last else None)
        return Page(stream, after, messages, skipped, last, oldest, truncated, nxt, epoch)

    def read_before(self, stream: str, before: int | None, limit: int) -> BackPage:
        """Up to ``limit`` messages of ``stream`` with seq < ``before`` (the newest ones when
        ``before`` is None), oldest first. One descending Query (``ScanIndexForward=False``)
        from the top down: skipped and expired seqs are passed over. A hole that is a write
        still in flight is passed over too: that message reaches live clients by its fan-out,
        and forward reads (resume) wait for it as before."""
        head = self.head(stream)
        top = head.last if before is None else min(before - 1, head.last)
        nxt = top + 1 if top < head.last else None
        if top < 1:
            return BackPage(stream, next=nxt, last=head.last, epoch=head.epoch)
        now_s = int(self._table.now())
        newest_first: list[dict[str, Any]] = []
        for item in self._items(stream, 1, top, limit, descending=True):
            if int(item.get(TTL, 0)) <= now_s:
                break  # older ones expired before it: nothing older is held
            if item.get("skipped") or "frame" not in item:
                continue
            newest_first.append(json.loads(item["frame"]))
            if len(newest_first) >= limit:
                break
        messages = newest_first[::-1]
        oldest = int(messages[0]["seq"]) if messages else None
        # A full page may have older messages before it; a short one reached the start.
        prev = oldest if oldest is not None and oldest > 1 and len(messages) >= limit else None
        return BackPage(stream, messages, prev, nxt, head.last, head.epoch)

    def _items(
        self, stream: str, first: int, last: int, limit: int, *, descending: bool = False
    ) -> Iterator[Item]:
        # Pages about the size asked for (plus a few tombstones or expired items), rather
        # than DynamoDB's 1 MB default: a history page never reads far past its limit.
        return query_all(
            self._table,
            Query(
                keys.stream_partition(stream),
                sk_between=(keys.seq_sort_key(first), keys.seq_sort_key(last)),
                limit=limit + 9,
                descending=descending,
            ),
        )
