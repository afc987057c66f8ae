"""The message log on moto's DynamoDB: numbering, reads, retention, skipped and in-flight seqs."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from chalicelib import protocol
from chalicelib.message_log import Head, LogWriteError, MessageLog
from chalicelib.table import DynamoDB
from tests.conftest import TABLE, Clock


def frame(text: str) -> dict[str, Any]:
    return {"type": "message", "id": text, "from": "u_1", "scope": "room", "text": text}


@pytest.fixture
def log(ddb: Any, clock: Clock) -> MessageLog:
    return MessageLog(DynamoDB(ddb, TABLE, clock=clock), ttl_seconds=3600, settle_seconds=30)


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages]


def test_seqs_start_at_one_and_increase_per_stream(log: MessageLog) -> None:
    assert [log.append("room:a", frame(f"a{i}"))["seq"] for i in range(3)] == [1, 2, 3]
    assert log.append("room:b", frame("b0"))["seq"] == 1
    stored = log.append("all", frame("x"))
    assert stored["stream"] == "all" and stored["seq"] == 1 and stored["text"] == "x"


def test_concurrent_appends_get_unique_seqs(ddb: Any, clock: Clock) -> None:
    seqs: list[int] = []
    lock = threading.Lock()
    # DynamoDB applies each UpdateItem atomically; moto's server does not across threads, so
    # its calls are serialised here: what is tested is that every append allocates its own seq.
    moto_lock = threading.Lock()

    class Serialised:
        def __getattr__(self, name: str) -> Any:
            call = getattr(ddb, name)
            if not callable(call):
                return call

            def serialised(**kwargs: Any) -> Any:
                with moto_lock:
                    return call(**kwargs)

            return serialised

    def writer(n: int) -> None:
        log = MessageLog(DynamoDB(Serialised(), TABLE, clock=clock))  # as separate containers would
        for i in range(10):
            seq = log.append("room:busy", frame(f"{n}.{i}"))["seq"]
            with lock:
                seqs.append(seq)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 41))


def test_read_returns_messages_after_a_seq_in_order_with_paging(log: MessageLog) -> None:
    for i in range(1, 11):
        log.append("room:a", frame(f"m{i}"))
    page = log.read("room:a", after=3, limit=4)
    assert texts(page.messages) == ["m4", "m5", "m6", "m7"]
    assert [m["seq"] for m in page.messages] == [4, 5, 6, 7]
    assert page.next == 8 and page.last == 10 and not page.truncated
    page = log.read("room:a", after=page.next - 1, limit=50)
    assert texts(page.messages) == ["m8", "m9", "m10"] and page.next is None


def test_read_of_a_caught_up_or_unknown_stream_is_empty(log: MessageLog) -> None:
    log.append("room:a", frame("m1"))
    assert log.read("room:a", after=1, limit=10).messages == []
    page = log.read("room:nobody", after=0, limit=10)
    assert page.messages == [] and page.last == 0 and page.next is None


def test_retention_expiry_truncates_with_the_oldest_seq_still_held(
    log: MessageLog, clock: Clock
) -> None:
    for i in range(1, 4):
        log.append("room:a", frame(f"old{i}"))
    clock.now += 3000
    log.append("room:a", frame("new4"))
    clock.now += 700  # old1..3 are past their ttl (3600 s); DynamoDB has not deleted them yet
    page = log.read("room:a", after=0, limit=10)
    assert texts(page.messages) == ["new4"]
    assert page.truncated and page.oldest == 4 and page.next is None


def test_a_failed_store_sends_nothing_and_its_seq_reads_as_skipped(
    ddb: Any, log: MessageLog, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.append("room:a", frame("m1"))
    real_put = ddb.put_item
    calls = {"n": 0}

    def failing_put(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("throttled")
        return real_put(**kwargs)

    monkeypatch.setattr(ddb, "put_item", failing_put)
    with pytest.raises(LogWriteError):
        log.append("room:a", frame("m2"))
    monkeypatch.setattr(ddb, "put_item", real_put)
    log.append("room:a", frame("m3"))
    page = log.read("room:a", after=0, limit=10)
    assert texts(page.messages) == ["m1", "m3"] and page.skipped == [2]


def test_a_hole_left_by_a_dead_writer_waits_while_young_then_reads_as_skipped(
    ddb: Any, log: MessageLog, clock: Clock
) -> None:
    log.append("room:a", frame("m1"))
    # A writer that allocated seq 2 and died before storing it.
    ddb.update_item(
        TableName=TABLE,
        Key={"PK": {"S": "STREAM#room:a"}, "SK": {"S": "HEAD"}},
        UpdateExpression="ADD #l :one",
        ExpressionAttributeNames={"#l": "last"},
        ExpressionAttributeValues={":one": {"N": "1"}},
    )
    log.append("room:a", frame("m3"))
    young = log.read("room:a", after=1, limit=10)
    assert young.messages == [] and young.skipped == [] and young.next == 2  # maybe in flight
    clock.now += 31
    settled = log.read("room:a", after=1, limit=10)
    assert texts(settled.messages) == ["m3"] and settled.skipped == [2] and settled.next is None


def test_a_hole_at_the_head_is_in_flight_until_it_settles(
    ddb: Any, log: MessageLog, clock: Clock
) -> None:
    log.append("room:a", frame("m1"))
    log._allocate("room:a", int(clock.now * 1000))  # allocated, not yet stored
    page = log.read("room:a", after=1, limit=10)
    assert page.next == 2 and page.skipped == [] and page.last == 2
    clock.now += 31
    page = log.read("room:a", after=1, limit=10)
    assert page.skipped == [2] and page.next is None


def test_a_failed_allocation_raises_and_stores_nothing(
    ddb: Any, log: MessageLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing(**_: Any) -> Any:
        raise RuntimeError("ProvisionedThroughputExceeded")

    monkeypatch.setattr(ddb, "update_item", failing)
    with pytest.raises(LogWriteError):
        log.append("room:a", frame("m1"))
    monkeypatch.undo()
    assert log.last_seq("room:a") == (0, 0)


def test_a_read_is_a_query_on_the_stream_partition_never_a_scan(
    ddb: Any, log: MessageLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(5):
        log.append("room:a", frame(f"m{i}"))

    def no_scan(**_: Any) -> Any:
        raise AssertionError("Scan")

    monkeypatch.setattr(ddb, "scan", no_scan)
    queries: list[dict[str, Any]] = []
    real_query = ddb.query

    def recording(**kwargs: Any) -> Any:
        queries.append(kwargs)
        return real_query(**kwargs)

    monkeypatch.setattr(ddb, "query", recording)
    assert len(log.read("room:a", after=2, limit=2).messages) == 2
    assert len(queries) == 1 and queries[0]["Limit"] < 20
    assert {"S": "STREAM#room:a"} in queries[0]["ExpressionAttributeValues"].values()


# --- epochs and backwards reads (issue #24) ------------------------------------------------


def test_a_stream_gets_an_epoch_with_its_counter_and_keeps_it(log: MessageLog) -> None:
    first = log.append("room:a", frame("m1"))
    second = log.append("room:a", frame("m2"))
    assert first["epoch"] and first["epoch"] == second["epoch"]
    assert protocol.valid_epoch(first["epoch"])
    assert log.head("room:a").epoch == first["epoch"]
    assert log.read("room:a", after=0, limit=10).epoch == first["epoch"]
    assert [m["epoch"] for m in log.read("room:a", after=0, limit=10).messages] == [
        first["epoch"]
    ] * 2
    # Another stream, another epoch.
    assert log.append("room:b", frame("b1"))["epoch"] != first["epoch"]


def test_a_stream_never_written_has_no_epoch_and_reading_it_creates_nothing(
    ddb: Any, log: MessageLog
) -> None:
    assert log.head("room:new") == Head(last=0, at=0, epoch=None)
    page = log.read("room:new", after=0, limit=10)
    assert (page.epoch, page.last, page.messages) == (None, 0, [])
    back = log.read_before("room:new", None, 10)
    assert (back.epoch, back.last, back.messages, back.prev) == (None, 0, [], None)
    assert ddb.scan(TableName=TABLE)["Items"] == []  # nothing written


def test_an_emptied_and_recreated_log_numbers_the_stream_in_a_new_epoch(
    ddb: Any, log: MessageLog
) -> None:
    old = log.append("room:a", frame("m1"))
    for item in ddb.scan(TableName=TABLE)["Items"]:  # the table emptied, as by a restart
        ddb.delete_item(TableName=TABLE, Key={"PK": item["PK"], "SK": item["SK"]})
    new = log.append("room:a", frame("again"))
    assert new["seq"] == 1 and new["epoch"] != old["epoch"]


def test_latest_reads_the_newest_oldest_first_and_before_pages_backwards(log: MessageLog) -> None:
    for i in range(1, 13):
        log.append("room:a", frame(f"m{i}"))
    latest = log.read_before("room:a", None, 5)
    assert texts(latest.messages) == ["m8", "m9", "m10", "m11", "m12"]
    assert (latest.prev, latest.next, latest.last) == (8, None, 12)
    older = log.read_before("room:a", latest.prev, 5)
    assert texts(older.messages) == ["m3", "m4", "m5", "m6", "m7"]
    assert (older.prev, older.next) == (3, 8)
    oldest = log.read_before("room:a", older.prev, 5)
    assert texts(oldest.messages) == ["m1", "m2"] and oldest.prev is None
    assert log.read_before("room:a", 1, 5).messages == []
    # ``before`` past the end reads the newest, like ``latest``.
    assert texts(log.read_before("room:a", 99, 2).messages) == ["m11", "m12"]


def test_backwards_reads_pass_over_skipped_and_expired_seqs(
    ddb: Any, log: MessageLog, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    log.append("room:a", frame("old"))
    clock.now += 3000
    log.append("room:a", frame("m2"))
    real_put = ddb.put_item
    calls = {"n": 0}

    def failing_once(**kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("boom")
        return real_put(**kwargs)

    monkeypatch.setattr(ddb, "put_item", failing_once)
    with pytest.raises(LogWriteError):
        log.append("room:a", frame("lost"))  # seq 3 becomes a skipped tombstone
    monkeypatch.undo()
    log.append("room:a", frame("m4"))
    clock.now += 700  # seq 1 is past retention now
    page = log.read_before("room:a", None, 10)
    assert texts(page.messages) == ["m2", "m4"] and page.prev is None
    assert [m["seq"] for m in page.messages] == [2, 4]
