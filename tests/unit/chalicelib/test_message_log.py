"""The message log on the in-memory table: seqs, pages, tombstones and holes."""

from __future__ import annotations

import pytest

from chalicelib import keys
from chalicelib.message_log import Head, MessageLog
from chalicelib.table import Update
from tests.conftest import Clock
from tests.memtable import MemoryTable


@pytest.fixture
def log(mem: MemoryTable) -> MessageLog:
    return MessageLog(mem, ttl_seconds=3600, settle_seconds=30)


def frame(text: str) -> dict[str, str]:
    return {"type": "message", "text": text}


def texts(page: object) -> list[str]:
    return [m["text"] for m in page.messages]  # type: ignore[attr-defined]


def test_appends_are_numbered_and_read_back_in_pages(log: MessageLog) -> None:
    assert [log.append("room:a", frame(f"m{i}"))["seq"] for i in range(5)] == [1, 2, 3, 4, 5]
    page = log.read("room:a", after=1, limit=2)
    assert texts(page) == ["m1", "m2"] and (page.last, page.next) == (5, 4)
    page = log.read("room:a", after=3, limit=10)
    assert texts(page) == ["m3", "m4"] and page.next is None
    epoch = log.head("room:a").epoch
    assert log.get("room:a", 2) == {
        "type": "message", "text": "m1", "stream": "room:a", "seq": 2, "epoch": epoch,
    }  # fmt: skip
    assert log.last_seq("room:b") == (0, 0)


def test_a_hole_stops_a_read_while_young_and_is_skipped_once_settled(
    log: MessageLog, mem: MemoryTable, clock: Clock
) -> None:
    log.append("room:a", frame("m0"))
    # A writer that allocated seq 2 and died before storing it.
    mem.update(keys.head_key("room:a"), Update(add={"last": 1}))
    log.append("room:a", frame("m2"))
    young = log.read("room:a", after=0, limit=10)
    assert texts(young) == ["m0"] and young.next == 2
    clock.now += 31
    settled = log.read("room:a", after=0, limit=10)
    assert texts(settled) == ["m0", "m2"] and settled.skipped == [2]


def test_a_message_the_log_could_not_store_leaves_a_tombstone(
    log: MessageLog, mem: MemoryTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_put = mem.put

    def put(item: dict[str, object], **options: object) -> None:
        if "frame" in item:
            raise RuntimeError("unavailable")
        real_put(item, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(mem, "put", put)
    with pytest.raises(Exception, match="storing seq 1"):
        log.append("room:a", frame("lost"))
    monkeypatch.undo()
    log.append("room:a", frame("kept"))
    page = log.read("room:a", after=0, limit=10)
    assert texts(page) == ["kept"] and page.skipped == [1]


def test_messages_past_retention_are_gone(log: MessageLog, clock: Clock) -> None:
    log.append("room:a", frame("old"))
    clock.now += 3601
    assert log.get("room:a", 1) is None
    page = log.read("room:a", after=0, limit=10)
    assert page.messages == [] and page.truncated


def test_a_stream_s_epoch_is_created_with_its_counter_and_kept(log: MessageLog) -> None:
    first = log.append("room:a", frame("m1"))
    second = log.append("room:a", frame("m2"))
    assert first["epoch"] == second["epoch"] == log.head("room:a").epoch
    assert log.append("room:b", frame("b1"))["epoch"] != first["epoch"]


def test_reading_a_stream_never_written_creates_nothing(log: MessageLog, mem: MemoryTable) -> None:
    assert log.head("room:new") == Head()
    assert log.read("room:new", after=0, limit=5).epoch is None
    assert log.read_before("room:new", None, 5).messages == []
    assert mem.get(keys.head_key("room:new")) is None


def test_read_before_pages_backwards_oldest_first(log: MessageLog) -> None:
    for i in range(1, 8):
        log.append("room:a", frame(f"m{i}"))
    latest = log.read_before("room:a", None, 3)
    assert [m["text"] for m in latest.messages] == ["m5", "m6", "m7"]
    assert (latest.prev, latest.next) == (5, None)
    older = log.read_before("room:a", latest.prev, 3)
    assert [m["text"] for m in older.messages] == ["m2", "m3", "m4"] and older.next == 5
    first = log.read_before("room:a", older.prev, 3)
    assert [m["text"] for m in first.messages] == ["m1"] and first.prev is None
