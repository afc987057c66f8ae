"""Resume and history over the message log on moto: authorization, order, limits, retention."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import protocol
from chalicelib.management_api import Outcome
from chalicelib.message_log import MessageLog
from chalicelib.protocol import Cursor, History, Resume
from chalicelib.replay import Replayer
from chalicelib.table import DynamoDB
from tests.conftest import TABLE, Clock


@pytest.fixture
def log(ddb: Any, clock: Clock) -> MessageLog:
    return MessageLog(DynamoDB(ddb, TABLE, clock=clock), ttl_seconds=3600)


class Inbox:
    """A connection's posts: ``posts`` as received; ``frames`` the messages they carried."""

    def __init__(self, gone_after: int | None = None) -> None:
        self.posts: list[dict[str, Any]] = []
        self.sizes: list[int] = []
        self.gone_after = gone_after

    def __call__(self, data: bytes) -> Outcome:
        if self.gone_after is not None and len(self.posts) >= self.gone_after:
            return Outcome.GONE
        self.posts.append(json.loads(data))
        self.sizes.append(len(data))
        return Outcome.DELIVERED

    @property
    def frames(self) -> list[dict[str, Any]]:
        assert all(p["type"] == "replay" for p in self.posts), self.posts
        return [m for p in self.posts for m in p["messages"]]


def cursors(*pairs: tuple[str, int]) -> tuple[Cursor, ...]:
    return tuple(Cursor(stream, seq) for stream, seq in pairs)


def fill(log: MessageLog, stream: str, n: int) -> None:
    for i in range(1, n + 1):
        log.append(stream, {"type": "message", "id": f"{stream}-{i}", "text": f"{stream} {i}"})


def test_resume_replays_each_allowed_stream_in_seq_order_then_answers(log: MessageLog) -> None:
    fill(log, "room:lobby", 5)
    fill(log, "user:alice", 3)
    fill(log, "all", 2)
    inbox = Inbox()
    streams = cursors(("room:lobby", 2), ("user:alice", 0), ("all", 2))
    resumed = Replayer(log).resume(Resume(streams, 1), "alice", frozenset({"lobby"}), inbox)
    epochs = {s: log.head(s).epoch for s in ("room:lobby", "user:alice", "all")}
    assert resumed == {
        "type": "resumed",
        "ref": 1,
        "streams": {
            "room:lobby": {
                "after": 2, "epoch": epochs["room:lobby"], "last": 5, "replayed": 3,
                "truncated": False,
            },
            "user:alice": {
                "after": 0, "epoch": epochs["user:alice"], "last": 3, "replayed": 3,
                "truncated": False,
            },
            "all": {"after": 2, "epoch": epochs["all"], "last": 2, "replayed": 0, "truncated": False},
        },
    }  # fmt: skip
    # One replay frame per stream (a few short messages each), in seq order within it.
    assert [(p["stream"], p["epoch"]) for p in inbox.posts] == [
        ("room:lobby", epochs["room:lobby"]),
        ("user:alice", epochs["user:alice"]),
    ]
    got = [(f["stream"], f["seq"]) for f in inbox.frames]
    assert got == [("room:lobby", s) for s in (3, 4, 5)] + [("user:alice", s) for s in (1, 2, 3)]


def test_resume_refuses_other_rooms_and_users_but_resumes_the_rest(log: MessageLog) -> None:
    fill(log, "room:secret", 2)
    fill(log, "user:bob", 2)
    fill(log, "all", 1)
    inbox = Inbox()
    streams = cursors(("room:secret", 0), ("user:bob", 0), ("all", 0))
    resumed = Replayer(log).resume(Resume(streams), "alice", frozenset({"lobby"}), inbox)
    assert resumed is not None
    assert "refused" in resumed["streams"]["room:secret"]
    assert "refused" in resumed["streams"]["user:bob"]
    assert resumed["streams"]["all"]["replayed"] == 1
    assert [f["stream"] for f in inbox.frames] == ["all"]


def test_resume_stops_at_max_replay_and_says_where_to_page_on(log: MessageLog) -> None:
    fill(log, "all", 12)
    inbox = Inbox()
    resumed = Replayer(log, max_replay=5).resume(
        Resume(cursors(("all", 0))), "a", frozenset(), inbox
    )
    assert resumed is not None
    assert resumed["streams"]["all"] == {
        "after": 0,
        "epoch": log.head("all").epoch,
        "last": 12,
        "replayed": 5,
        "truncated": True,
        "next": 6,
    }
    assert [f["seq"] for f in inbox.frames] == [1, 2, 3, 4, 5]


def test_resume_older_than_retention_is_truncated_with_the_oldest_seq_held(
    log: MessageLog, clock: Clock
) -> None:
    fill(log, "all", 3)
    clock.now += 3000
    fill(log, "all", 1)  # seq 4
    clock.now += 700
    inbox = Inbox()
    resumed = Replayer(log).resume(Resume(cursors(("all", 1))), "a", frozenset(), inbox)
    assert resumed is not None
    summary = resumed["streams"]["all"]
    assert summary["truncated"] is True and summary["oldest"] == 4 and summary["replayed"] == 1


def test_resume_stops_when_the_connection_is_gone(log: MessageLog) -> None:
    fill(log, "all", 5)
    inbox = Inbox(gone_after=2)
    replayer = Replayer(log, frame_bytes=300)  # about one message per frame
    assert replayer.resume(Resume(cursors(("all", 0))), "a", frozenset(), inbox) is None
    assert len(inbox.posts) == 2


def test_history_pages_and_refuses_like_resume(log: MessageLog) -> None:
    fill(log, "room:lobby", 7)
    replayer = Replayer(log)
    page = replayer.history(History("room:lobby", 2, 3, "h"), "alice", frozenset({"lobby"}))
    assert page["type"] == "history" and page["ref"] == "h" and page["next"] == 6
    assert [m["seq"] for m in page["messages"]] == [3, 4, 5]
    assert "replayed" not in page["messages"][0]
    last = replayer.history(History("room:lobby", 5, 50), "alice", frozenset({"lobby"}))
    assert [m["seq"] for m in last["messages"]] == [6, 7] and last["next"] is None
    refused = replayer.history(History("room:lobby", 0, 5, 9), "bob", frozenset())
    assert refused["type"] == "error" and refused["code"] == "forbidden" and refused["ref"] == 9
    other_user = replayer.history(History("user:alice", 0, 5), "bob", frozenset())
    assert other_user["code"] == "forbidden"


# --- batched replay, epochs, recent history (issue #24) ------------------------------------


def test_five_hundred_missed_messages_take_a_handful_of_posts_in_seq_order(
    log: MessageLog,
) -> None:
    fill(log, "all", 500)
    inbox = Inbox()
    resumed = Replayer(log).resume(Resume(cursors(("all", 0))), "a", frozenset(), inbox)
    assert resumed is not None and resumed["streams"]["all"]["replayed"] == 500
    assert len(inbox.posts) <= 5 and max(inbox.sizes) <= 32 * 1024
    assert [f["seq"] for f in inbox.frames] == list(range(1, 501))


def test_a_cursor_from_another_epoch_is_a_reset_to_page_from_the_start(
    log: MessageLog,
) -> None:
    fill(log, "all", 3)
    epoch = log.head("all").epoch
    inbox = Inbox()
    stale = Resume((Cursor("all", 2, "an-old-epoch"),))
    resumed = Replayer(log).resume(stale, "a", frozenset(), inbox)
    assert resumed is not None
    assert resumed["streams"]["all"] == {
        "after": 0, "epoch": epoch, "last": 3, "replayed": 0, "truncated": True, "reset": True,
        "next": 1,
    }  # fmt: skip
    # Nothing of the new numbering before the client knows of it: it pages from next - 1.
    assert inbox.posts == []
    page = Replayer(log).history(History("all", 0, 50), "a", frozenset())
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3] and page["epoch"] == epoch
    # The current epoch: an ordinary resume.
    inbox = Inbox()
    current = Resume((Cursor("all", 2, epoch),))
    summary = Replayer(log).resume(current, "a", frozenset(), inbox)["streams"]["all"]  # type: ignore[index]
    assert "reset" not in summary and [f["seq"] for f in inbox.frames] == [3]


def test_a_bare_seq_past_the_end_is_a_reset_too(log: MessageLog) -> None:
    # A client that remembers seq 24 of a log that was emptied and now holds 3 messages.
    fill(log, "all", 3)
    inbox = Inbox()
    resumed = Replayer(log).resume(Resume(cursors(("all", 24))), "a", frozenset(), inbox)
    assert resumed is not None and resumed["streams"]["all"]["reset"] is True
    assert resumed["streams"]["all"]["next"] == 1 and inbox.posts == []


def test_a_stream_never_written_answers_epoch_null_and_last_zero(log: MessageLog) -> None:
    inbox = Inbox()
    fresh = Resume((Cursor("all", 0, None),))
    resumed = Replayer(log).resume(fresh, "a", frozenset(), inbox)
    assert resumed is not None
    assert resumed["streams"]["all"] == {
        "after": 0, "epoch": None, "last": 0, "replayed": 0, "truncated": False,
    }  # fmt: skip
    # A client holding an epoch of a stream that is gone: reset, to an empty stream.
    gone = Replayer(log).resume(Resume((Cursor("all", 5, "gone"),)), "a", frozenset(), inbox)
    assert gone is not None and gone["streams"]["all"] == {
        "after": 0, "epoch": None, "last": 0, "replayed": 0, "truncated": False, "reset": True,
    }  # fmt: skip
    assert inbox.posts == []


def test_latest_history_pages_backwards_with_prev(log: MessageLog) -> None:
    fill(log, "room:lobby", 12)
    replayer = Replayer(log)
    rooms = frozenset({"lobby"})
    latest = replayer.history(History("room:lobby", 0, 5, 1, latest=True), "a", rooms)
    assert [m["seq"] for m in latest["messages"]] == [8, 9, 10, 11, 12]
    assert (latest["prev"], latest["next"], latest["last"]) == (8, None, 12)
    assert latest["epoch"] == log.head("room:lobby").epoch
    older = replayer.history(History("room:lobby", 0, 5, 2, before=latest["prev"]), "a", rooms)
    assert [m["seq"] for m in older["messages"]] == [3, 4, 5, 6, 7]
    assert (older["prev"], older["next"]) == (3, 8)
    first = replayer.history(History("room:lobby", 0, 5, 3, before=3), "a", rooms)
    assert [m["seq"] for m in first["messages"]] == [1, 2] and first["prev"] is None
    refused = replayer.history(History("room:lobby", 0, 5, latest=True), "b", frozenset())
    assert refused["code"] == "forbidden"


def test_a_history_page_is_cut_to_fit_one_post(log: MessageLog) -> None:
    big = "x" * 40_000
    for i in range(1, 6):
        log.append("all", {"type": "message", "id": f"m{i}", "text": big})
    replayer = Replayer(log)
    page = replayer.history(History("all", 0, 50), "a", frozenset())
    assert len(protocol.encode(page)) <= protocol.MAX_PAYLOAD_BYTES
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3] and page["next"] == 4
    back = replayer.history(History("all", 0, 50, latest=True), "a", frozenset())
    assert len(protocol.encode(back)) <= protocol.MAX_PAYLOAD_BYTES
    assert [m["seq"] for m in back["messages"]] == [3, 4, 5] and back["prev"] == 3


def test_a_bare_max_seq_means_from_now_and_is_never_a_reset(log: MessageLog) -> None:
    # The clients resume a stream they start following with 2**53: nothing to replay.
    fill(log, "all", 3)
    inbox = Inbox()
    now = Resume(cursors(("all", protocol.MAX_SEQ)))
    resumed = Replayer(log).resume(now, "a", frozenset(), inbox)
    assert resumed is not None and inbox.posts == []
    summary = resumed["streams"]["all"]
    assert "reset" not in summary and (summary["after"], summary["last"]) == (protocol.MAX_SEQ, 3)
