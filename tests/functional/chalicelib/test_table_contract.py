"""One contract for the table layer, run on moto (``DynamoDB``) and on the in-memory twin.

Every case runs twice: against ``chalicelib.table.DynamoDB`` over moto's DynamoDB, which the
functional tier trusts as DynamoDB, and against ``tests.memtable.MemoryTable``, which the unit
tier runs on. Whatever the domain services rely on (conditional writes and the old item they
return, update expressions, TTL filtering, index queries and their projection, paging,
transactions, batches) is pinned here, so the twin cannot drift from the real thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr

from chalicelib import keys
from chalicelib.keys import TTL
from chalicelib.table import (
    Change,
    ConditionFailed,
    Delete,
    Put,
    Query,
    Table,
    TransactionCancelled,
    Update,
    query_all,
)
from tests.conftest import TABLE, Clock
from tests.memtable import MemoryTable

NOW = 1_795_608_000.0


@pytest.fixture(params=["moto", "memory"])
def table(request: pytest.FixtureRequest) -> Iterator[Table]:
    clock = Clock(NOW)
    if request.param == "memory":
        yield MemoryTable(clock, page_size=2)
        return
    ddb = request.getfixturevalue("ddb")
    from chalicelib.table import DynamoDB

    yield DynamoDB(ddb, TABLE, clock=clock)


def conn(cid: str, user: str = "u1", ttl: int = int(NOW) + 100, **extra: Any) -> dict[str, Any]:
    return {
        **keys.conn_key(cid),
        **keys.conn_index_keys(cid, user, keys.shard_of(cid, 2)),
        "connectionId": cid,
        "userId": user,
        TTL: ttl,
        **extra,
    }


def test_an_item_round_trips_in_plain_python_values(table: Table) -> None:
    item = conn("a", rooms={"r1", "r2"}, connectedAt=1_795_608_000_123, flag=True)
    table.put(item)
    assert table.get(keys.conn_key("a")) == item
    assert table.get(keys.conn_key("a"), projection=("userId", "rooms")) == {
        "userId": "u1",
        "rooms": {"r1", "r2"},
    }
    assert table.get(keys.conn_key("nobody")) is None


def test_a_failed_put_condition_writes_nothing(table: Table) -> None:
    table.put(conn("a", role="admin"))
    with pytest.raises(ConditionFailed):
        table.put(conn("a", user="u2"), condition=Attr("PK").not_exists())
    assert table.get(keys.conn_key("a"))["userId"] == "u1"  # type: ignore[index]
    # A condition that holds (an expired record counts as absent) writes.
    table.put(
        conn("a", user="u3"), condition=Attr("PK").not_exists() | Attr(TTL).lte(int(NOW) + 100)
    )
    assert table.get(keys.conn_key("a"))["userId"] == "u3"  # type: ignore[index]


def test_a_failed_update_condition_returns_the_old_item_when_asked(table: Table) -> None:
    table.put(conn("a", rateTat=50))
    with pytest.raises(ConditionFailed) as failed:
        table.update(
            keys.conn_key("a"),
            Update(set={"rateTat": 60}),
            condition=Attr("rateTat").lte(10),
            old_on_failure=True,
        )
    assert failed.value.old is not None and failed.value.old["rateTat"] == 50
    assert failed.value.retried is False
    with pytest.raises(ConditionFailed) as missing:
        table.update(
            keys.conn_key("ghost"),
            Update(set={"rateTat": 1}),
            condition=Attr("PK").exists(),
            old_on_failure=True,
        )
    assert missing.value.old is None
    assert table.get(keys.conn_key("ghost")) is None  # nothing created


def test_update_sets_adds_and_deletes_and_returns_what_is_asked(table: Table) -> None:
    head = keys.head_key("room:a")
    # UPDATED_NEW: "only the updated attributes, as they appear after the UpdateItem"
    # (UpdateItem API reference, ReturnValues). moto adds the key attributes when the update
    # creates the item, so only the updated ones are compared.
    new = table.update(head, Update(set={"at": 5}, add={"last": 1}), returns="UPDATED_NEW")
    assert new is not None and (new["at"], new["last"]) == (5, 1)
    new = table.update(head, Update(add={"last": 1}), returns="UPDATED_NEW")
    assert new is not None and new["last"] == 2 and "at" not in new
    key = keys.presence_key("lobby", "u1")
    new = table.update(key, Update(add={"conns": {"a", "b"}}), returns="ALL_NEW")
    assert new is not None and new["conns"] == {"a", "b"}
    new = table.update(
        key,
        Update(delete={"conns": {"a"}}),
        condition=Attr("conns").contains("a") & Attr("conns").size().gt(1),
        returns="ALL_NEW",
    )
    assert new is not None and new["conns"] == {"b"}
    # Deleting the last member removes the attribute: DynamoDB holds no empty set.
    new = table.update(key, Update(delete={"conns": {"b"}}), returns="ALL_NEW")
    assert new is not None and "conns" not in new
    assert table.update(key, Update(set={"x": 1})) is None  # ReturnValues NONE


def test_a_conditional_delete_and_the_old_item(table: Table) -> None:
    table.put(conn("a"))
    with pytest.raises(ConditionFailed):
        table.delete(keys.conn_key("a"), condition=Attr("rooms").exists())
    old = table.delete(keys.conn_key("a"), return_old=True)
    assert old is not None and old["connectionId"] == "a"
    assert table.delete(keys.conn_key("a"), return_old=True) is None


def test_a_query_pages_through_every_item_with_a_small_limit(table: Table) -> None:
    for i in range(7):
        table.put({**keys.member_key("lobby", f"c{i}"), "connectionId": f"c{i}", TTL: int(NOW) + 9})
    table.put({**keys.presence_key("lobby", "u1"), "conns": {"c0"}, TTL: int(NOW) + 9})
    query = Query(keys.room_partition("lobby"), sk_prefix=keys.CONN_PREFIX, limit=2)
    first = table.query(query)
    assert len(first.items) == 2 and first.last is not None
    assert [i["connectionId"] for i in query_all(table, query)] == [f"c{i}" for i in range(7)]


def test_live_queries_filter_ttl_after_the_limit(table: Table) -> None:
    table.put({**keys.member_key("r", "a"), "connectionId": "a", TTL: int(NOW)})  # expired
    table.put({**keys.member_key("r", "b"), "connectionId": "b", TTL: int(NOW) - 5})
    table.put({**keys.member_key("r", "c"), "connectionId": "c", TTL: int(NOW) + 1})
    query = Query(keys.room_partition("r"), sk_prefix=keys.CONN_PREFIX, live=True, limit=2)
    page = table.query(query)
    # Limit counts the items read, before the filter: a page may hold none and go on.
    assert page.items == [] and page.last is not None
    assert [i["connectionId"] for i in query_all(table, query)] == ["c"]
    assert table.count(query) == 1


def test_an_index_query_is_sparse_and_projected(table: Table) -> None:
    for cid, user in (("a", "u1"), ("b", "u1"), ("c", "u2")):
        table.put(conn(cid, user, rooms={"r"}, role="admin"))
    table.put({**keys.member_key("r", "a"), "connectionId": "a", "userId": "u1"})  # no GSI keys
    items = list(query_all(table, Query(keys.user_partition("u1"), index=keys.USERS_INDEX)))
    assert sorted(i["connectionId"] for i in items) == ["a", "b"]
    # GSI1 projects connectionId, userId, ttl and endpoint (schema.json): no rooms, no role.
    assert all("rooms" not in i and "role" not in i for i in items)
    projected = table.query(
        Query(keys.user_partition("u2"), index=keys.USERS_INDEX, projection=("connectionId",))
    )
    assert projected.items == [{"connectionId": "c"}]
    assert table.count(Query(keys.user_partition("u1"), index=keys.USERS_INDEX, live=True)) == 2


def test_a_sort_key_range_reads_in_order(table: Table) -> None:
    for seq in (1, 2, 3, 10, 11):
        table.put({**keys.message_key("s", seq), "seq": seq})
    table.put({**keys.head_key("s"), "last": 11})
    query = Query(
        keys.stream_partition("s"), sk_between=(keys.seq_sort_key(2), keys.seq_sort_key(10))
    )
    assert [i["seq"] for i in query_all(table, query)] == [2, 3, 10]


def test_a_transaction_writes_all_or_nothing_with_a_reason_per_item(table: Table) -> None:
    table.put(conn("a"))
    table.transact(
        [
            Put({**keys.member_key("lobby", "a"), "connectionId": "a"}),
            Change(keys.conn_key("a"), Update(add={"rooms": {"lobby"}}), Attr("PK").exists()),
        ]
    )
    assert table.get(keys.conn_key("a"))["rooms"] == {"lobby"}  # type: ignore[index]
    with pytest.raises(TransactionCancelled) as cancelled:
        table.transact(
            [
                Delete(keys.member_key("lobby", "a")),
                Change(keys.conn_key("ghost"), Update(add={"rooms": {"x"}}), Attr("PK").exists()),
            ]
        )
    assert cancelled.value.reasons == ["None", "ConditionalCheckFailed"]
    assert table.get(keys.member_key("lobby", "a")) is not None  # nothing was written


def test_batches_read_and_delete_more_than_one_call_takes(table: Table) -> None:
    for i in range(30):
        table.put(conn(f"c{i:02d}", rooms={f"r{i}"}))
    found = table.batch_get([keys.conn_key(f"c{i:02d}") for i in range(30)] + [keys.conn_key("x")],
                            ("rooms", TTL))  # fmt: skip
    assert sorted(next(iter(i["rooms"])) for i in found) == sorted(f"r{i}" for i in range(30))
    assert all(set(i) == {"rooms", TTL} for i in found)
    table.batch_delete([keys.conn_key(f"c{i:02d}") for i in range(30)])
    assert table.batch_get([keys.conn_key(f"c{i:02d}") for i in range(30)]) == []


def test_set_if_absent_sets_an_attribute_once(table: Table) -> None:
    # SET #a = if_not_exists(#a, :v) (UpdateItem, "Update expressions": if_not_exists): the
    # update that creates the item sets it; later ones leave it as it is.
    head = keys.head_key("room:a")
    first = table.update(
        head, Update(add={"last": 1}, set_if_absent={"epoch": "e1"}), returns="ALL_NEW"
    )
    assert first is not None and (first["last"], first["epoch"]) == (1, "e1")
    again = table.update(
        head, Update(add={"last": 1}, set_if_absent={"epoch": "e2"}), returns="ALL_NEW"
    )
    assert again is not None and (again["last"], again["epoch"]) == (2, "e1")


def test_a_descending_query_reads_newest_first_and_pages(table: Table) -> None:
    for seq in range(1, 6):
        table.put({**keys.message_key("room:a", seq), "seq": seq})
    query = Query(
        keys.stream_partition("room:a"),
        sk_between=(keys.seq_sort_key(2), keys.seq_sort_key(5)),
        descending=True,
        limit=2,
    )
    assert [i["seq"] for i in query_all(table, query)] == [5, 4, 3, 2]
    page = table.query(query)
    assert [i["seq"] for i in page.items] == [5, 4] and page.last is not None
