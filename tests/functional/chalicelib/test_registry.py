"""The registry against moto's DynamoDB."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.registry import DuplicateConnection, NotConnected, Registry
from chalicelib.table import DynamoDB
from tests.conftest import TABLE, Clock


class QueryRecorder:
    """The DynamoDB client, recording each Query and adding ``extra`` parameters to it (a
    small ``Limit`` makes every read page)."""

    def __init__(self, client: Any, **extra: Any) -> None:
        self._client = client
        self._extra = extra
        self.queries: list[dict[str, Any]] = []  # list.append: safe from the shard threads

    def query(self, **params: Any) -> Any:
        self.queries.append(params)
        return self._client.query(**params, **self._extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def ms(clock: Clock) -> int:
    return int(clock.now * 1000)


def ids(targets: Any) -> list[str]:
    return sorted(t.connection_id for t in targets)


def test_register_stores_the_seed_item_shape(registry: Registry, ddb: Any, clock: Clock) -> None:
    registry.register("R1kmxc2VNjMCFIA=", "u_123", ms(clock), endpoint="https://x/api")
    item = ddb.get_item(
        TableName=TABLE, Key={"PK": {"S": "CONN#R1kmxc2VNjMCFIA="}, "SK": {"S": "CONN"}}
    )["Item"]
    assert item["connectionId"]["S"] == "R1kmxc2VNjMCFIA="
    assert int(item["connectedAt"]["N"]) == ms(clock)
    assert int(item["ttl"]["N"]) == int(clock.now) + 7500
    assert item["GSI1PK"]["S"] == "USER#u_123"


def test_ttl_is_computed_per_connection(registry: Registry, clock: Clock) -> None:
    first = registry.register("a", "u", ms(clock))
    clock.now += 600
    second = registry.register("b", "u", ms(clock))
    assert second.ttl - first.ttl == 600


def test_register_is_conditional(registry: Registry, clock: Clock) -> None:
    registry.register("a", "u", ms(clock))
    with pytest.raises(DuplicateConnection):
        registry.register("a", "v", ms(clock))
    assert registry.get("a").user_id == "u"  # type: ignore[union-attr]


def test_a_retried_put_of_the_same_registration_succeeds(registry: Registry, clock: Clock) -> None:
    # botocore retries a put whose first attempt DynamoDB applied but answered after the read
    # timeout: the retry fails its condition on our own item, and $connect must not answer 409.
    registry.register("a", "u", ms(clock))
    assert registry.register("a", "u", ms(clock)).user_id == "u"
    with pytest.raises(DuplicateConnection):  # another registration of that id still is one
        registry.register("a", "u", ms(clock) + 1)


def test_user_query_finds_only_that_users_connections(registry: Registry, clock: Clock) -> None:
    for cid, user in [("a", "u1"), ("b", "u1"), ("c", "u2")]:
        registry.register(cid, user, ms(clock))
    assert ids(registry.user_connections("u1")) == ["a", "b"]
    assert ids(registry.user_connections("nobody")) == []


def test_rooms_join_leave_and_membership(registry: Registry, clock: Clock) -> None:
    a = registry.register("a", "u1", ms(clock))
    b = registry.register("b", "u2", ms(clock))
    registry.join(a, "lobby")
    registry.join(b, "lobby")
    registry.join(a, "dev")
    assert ids(registry.room_members("lobby")) == ["a", "b"]
    assert registry.get("a").rooms == {"lobby", "dev"}  # type: ignore[union-attr]
    registry.leave("a", "lobby")
    assert ids(registry.room_members("lobby")) == ["b"]
    assert registry.get("a").rooms == {"dev"}  # type: ignore[union-attr]


def test_join_after_disconnect_leaves_no_orphan(registry: Registry, clock: Clock) -> None:
    a = registry.register("a", "u1", ms(clock))
    registry.remove("a")
    with pytest.raises(NotConnected):
        registry.join(a, "lobby")
    assert ids(registry.room_members("lobby")) == []


def test_all_connections_uses_every_shard(ddb: Any, clock: Clock) -> None:
    client = QueryRecorder(ddb)
    registry = Registry(DynamoDB(client, TABLE, clock=clock), ttl_seconds=7500, all_shards=4)
    for i in range(40):
        registry.register(f"c{i}", f"u{i % 3}", ms(clock))
    assert ids(registry.all_connections()) == sorted(f"c{i}" for i in range(40))
    assert len(client.queries) >= 4  # one per shard, never a Scan


def test_remove_deletes_connection_and_memberships_idempotently(
    registry: Registry, ddb: Any, clock: Clock
) -> None:
    a = registry.register("a", "u1", ms(clock))
    for room in ("r1", "r2", "r3"):
        registry.join(a, room)
    assert registry.remove("a") is True
    assert registry.remove("a") is False
    assert ddb.scan(TableName=TABLE)["Count"] == 0  # a test may scan; the app never does


def test_expired_items_are_filtered_from_every_read(registry: Registry, clock: Clock) -> None:
    old = registry.register("old", "u1", ms(clock))
    registry.join(old, "lobby")
    clock.now += 7000
    fresh = registry.register("fresh", "u1", ms(clock))
    registry.join(fresh, "lobby")
    clock.now += 600  # old is past its ttl, DynamoDB has not reaped it
    assert registry.get("old") is None
    assert ids(registry.user_connections("u1")) == ["fresh"]
    assert ids(registry.room_members("lobby")) == ["fresh"]
    assert ids(registry.all_connections()) == ["fresh"]


def test_queries_page_through_last_evaluated_key(ddb: Any, clock: Clock) -> None:
    client = QueryRecorder(ddb, Limit=7)
    registry = Registry(DynamoDB(client, TABLE, clock=clock), all_shards=2)
    for i in range(30):
        conn = registry.register(f"c{i:02}", "many", ms(clock))
        registry.join(conn, "big")
    assert len(ids(registry.user_connections("many"))) == 30
    assert len(ids(registry.room_members("big"))) == 30
    assert len(ids(registry.all_connections())) == 30
    assert len(client.queries) >= 3 * 30 // 7
