"""Resume and history over the message log on moto: authorization, order, limits, retention."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.management_api import Outcome
from chalicelib.message_log import MessageLog
from chalicelib.protocol import History, Resume
from chalicelib.replay import Replayer
from chalicelib.table import DynamoDB
from tests.conftest import TABLE, Clock


@pytest.fixture
def log(ddb: Any, clock: Clock) -> MessageLog:
    return MessageLog(DynamoDB(ddb, TABLE, clock=clock), ttl_seconds=3600)


class Inbox:
    def __init__(self, gone_after: int | None = None) -> None:
        self.frames: list[dict[str, Any]] = []
        self.gone_after = gone_after

    def __call__(self, data: bytes) -> Outcome:
        if self.gone_after is not None and len(self.frames) >= self.gone_after:
            return Outcome.GONE
        self.frames.append(json.loads(data))
        return Outcome.DELIVERED


def fill(log: MessageLog, stream: str, n: int) -> None:
    for i in range(1, n + 1):
        log.append(stream, {"type": "message", "id": f"{stream}-{i}", "text": f"{stream} {i}"})


def test_resume_replays_each_allowed_stream_in_seq_order_then_answers(log: MessageLog) -> None:
    fill(log, "room:lobby", 5)
    fill(log, "user:alice", 3)
    fill(log, "all", 2)
    inbox = Inbox()
    streams = (("room:lobby", 2), ("user:alice", 0), ("all", 2))
    resumed = Replayer(log).resume(Resume(streams, 1), "alice", frozenset({"lobby"}), inbox)
    assert resumed == {
        "type": "resumed",
        "ref": 1,
        "streams": {
            "room:lobby": {"after": 2, "last": 5, "replayed": 3, "truncated": False},
            "user:alice": {"after": 0, "last": 3, "replayed": 3, "truncated": False},
            "all": {"after": 2, "last": 2, "replayed": 0, "truncated": False},
        },
    }
    got = [(f["stream"], f["seq"]) for f in inbox.frames]
    assert got == [("room:lobby", s) for s in (3, 4, 5)] + [("user:alice", s) for s in (1, 2, 3)]
    assert all(f["replayed"] is True and f["type"] == "message" for f in inbox.frames)


def test_resume_refuses_other_rooms_and_users_but_resumes_the_rest(log: MessageLog) -> None:
    fill(log, "room:secret", 2)
    fill(log, "user:bob", 2)
    fill(log, "all", 1)
    inbox = Inbox()
    streams = (("room:secret", 0), ("user:bob", 0), ("all", 0))
    resumed = Replayer(log).resume(Resume(streams), "alice", frozenset({"lobby"}), inbox)
    assert resumed is not None
    assert "refused" in resumed["streams"]["room:secret"]
    assert "refused" in resumed["streams"]["user:bob"]
    assert resumed["streams"]["all"]["replayed"] == 1
    assert [f["stream"] for f in inbox.frames] == ["all"]


def test_resume_stops_at_max_replay_and_says_where_to_page_on(log: MessageLog) -> None:
    fill(log, "all", 12)
    inbox = Inbox()
    resumed = Replayer(log, max_replay=5).resume(Resume((("all", 0),)), "a", frozenset(), inbox)
    assert resumed is not None
    assert resumed["streams"]["all"] == {
        "after": 0,
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
    resumed = Replayer(log).resume(Resume((("all", 1),)), "a", frozenset(), inbox)
    assert resumed is not None
    summary = resumed["streams"]["all"]
    assert summary["truncated"] is True and summary["oldest"] == 4 and summary["replayed"] == 1


def test_resume_stops_when_the_connection_is_gone(log: MessageLog) -> None:
    fill(log, "all", 5)
    inbox = Inbox(gone_after=2)
    assert Replayer(log).resume(Resume((("all", 0),)), "a", frozenset(), inbox) is None
    assert len(inbox.frames) == 2


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
