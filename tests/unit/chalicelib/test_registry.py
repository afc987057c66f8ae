"""Registry on the in-memory table: connections, memberships, audiences and their paging."""

from __future__ import annotations

import pytest

from chalicelib import keys
from chalicelib.registry import (
    DuplicateConnection,
    NotConnected,
    QuerySpec,
    RecentIds,
    Registry,
    RegistryError,
)
from chalicelib.table import UnprocessedItems, Update
from tests.conftest import Clock
from tests.memtable import MemoryTable
from tests.unit.chalicelib.memory import START, ms


@pytest.fixture
def registry(mem: MemoryTable) -> Registry:
    return Registry(mem, ttl_seconds=7500, all_shards=3)


def ids(targets: object) -> list[str]:
    return sorted(t.connection_id for t in targets)  # type: ignore[attr-defined]


def test_register_then_get_reads_the_record_back(registry: Registry, clock: Clock) -> None:
    record = registry.register("a", "u1", ms(clock), endpoint="https://e/api", role="admin",
                               token_expires_at=int(START) + 60)  # fmt: skip
    assert record.ttl == int(START) + 7500
    got = registry.get("a")
    assert got == record
    assert got is not None and not got.token_expired(registry.now())
    clock.now += 60
    assert got.token_expired(registry.now())


def test_a_second_registration_is_refused_unless_it_is_the_same_one(
    registry: Registry, clock: Clock
) -> None:
    registry.register("a", "u1", ms(clock))
    # botocore resending a put that was applied: the same user and connectedAt succeed.
    assert registry.register("a", "u1", ms(clock)).user_id == "u1"
    with pytest.raises(DuplicateConnection):
        registry.register("a", "u2", ms(clock))


def test_join_and_leave_keep_the_membership_and_the_connection_in_step(
    registry: Registry, clock: Clock
) -> None:
    a = registry.register("a", "u1", ms(clock), endpoint="https://e/api")
    registry.join(a, "lobby")
    registry.join(a, "side")
    member = next(iter(registry.room_members("lobby")))
    assert (member.connection_id, member.user_id, member.endpoint) == ("a", "u1", "https://e/api")
    assert registry.get("a").rooms == {"lobby", "side"}  # type: ignore[union-attr]
    registry.leave("a", "lobby")
    assert ids(registry.room_members("lobby")) == []
    assert registry.get("a").rooms == {"side"}  # type: ignore[union-attr]


def test_a_join_after_the_connection_went_is_refused_and_writes_nothing(
    registry: Registry, mem: MemoryTable, clock: Clock
) -> None:
    a = registry.register("a", "u1", ms(clock))
    registry.remove("a")
    with pytest.raises(NotConnected):
        registry.join(a, "lobby")
    assert mem.items() == []


def test_remove_connection_deletes_every_membership_and_says_what_it_removed(
    registry: Registry, mem: MemoryTable, clock: Clock
) -> None:
    a = registry.register("a", "u1", ms(clock))
    for room in ("r1", "r2", "r3"):
        registry.join(a, room)
    removed = registry.remove_connection("a")
    assert removed is not None and (removed.user_id, removed.rooms) == (
        "u1",
        frozenset({"r1", "r2", "r3"}),
    )
    assert mem.items() == []
    assert registry.remove_connection("a") is None and registry.remove("a") is False


def test_a_connection_seen_removed_is_not_read_again(
    registry: Registry, mem: MemoryTable, clock: Clock
) -> None:
    # A room whose members all drop: each $disconnect's announcement finds the others gone
    # and prunes them; what this container removed, or found gone, costs no second read.
    registry.join(registry.register("a", "u1", ms(clock)), "lobby")
    assert registry.remove_connection("a") is not None
    assert registry.remove_connection("never-registered") is None
    mem.calls.clear()
    assert registry.remove_connection("a") is None
    assert registry.remove_connection("never-registered") is None
    assert mem.calls == []


def test_a_removal_that_failed_midway_is_finished_by_the_next(
    registry: Registry, mem: MemoryTable, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.join(registry.register("a", "u1", ms(clock)), "lobby")

    def unprocessed(*args: object, **kwargs: object) -> None:
        raise UnprocessedItems("1 keys left unprocessed after retries")

    with monkeypatch.context() as patch:
        patch.setattr(mem, "batch_delete", unprocessed)
        with pytest.raises(RegistryError):
            registry.remove_connection("a")
    removed = registry.remove_connection("a")  # not remembered as removed: read and finished
    assert removed is not None and removed.rooms == {"lobby"}
    assert mem.items() == []


def test_an_id_registered_again_is_removed_again(registry: Registry, clock: Clock) -> None:
    registry.register("a", "u1", ms(clock))
    assert registry.remove("a")
    registry.register("a", "u1", ms(clock))  # never on AWS (ids are unique); tests reuse ids
    assert registry.remove("a")


def test_recent_ids_forget_the_oldest_first() -> None:
    recent = RecentIds(2)
    for key in ("a", "b", "a", "c"):
        recent.add(key)
    assert ("a" in recent, "b" in recent, "c" in recent, len(recent)) == (True, False, True, 2)
    recent.discard("a")
    assert "a" not in recent


def test_every_read_filters_expired_items(registry: Registry, clock: Clock) -> None:
    old = registry.register("old", "u1", ms(clock))
    registry.join(old, "lobby")
    clock.now += 7000
    registry.join(registry.register("new", "u1", ms(clock)), "lobby")
    clock.now += 600  # old is past its ttl; TTL has not deleted it
    assert registry.get("old") is None
    assert ids(registry.user_connections("u1")) == ["new"]
    assert ids(registry.room_members("lobby")) == ["new"]
    assert ids(registry.all_connections()) == ["new"]


def test_audiences_page_through_many_small_pages(
    registry: Registry, mem: MemoryTable, clock: Clock
) -> None:
    for i in range(11):
        registry.join(registry.register(f"c{i:02d}", "many", ms(clock)), "big")
    mem.calls.clear()
    assert len(ids(registry.user_connections("many"))) == 11
    assert len(ids(registry.room_members("big"))) == 11
    assert len(ids(registry.all_connections())) == 11
    assert mem.calls.count("query") >= 3 * 11 // 2


def test_a_sweep_stopped_early_hands_back_exactly_the_rest(
    registry: Registry, clock: Clock
) -> None:
    for i in range(9):
        registry.register(f"c{i}", f"u{i}", ms(clock))
    sweep = registry.sweep(registry.all_queries())
    seen = []
    for target in sweep:
        seen.append(target.connection_id)
        if len(seen) == 4:
            break
    read, queries = sweep.rest()
    rest = [t.connection_id for t in read]
    # The unfinished Queries, resumed through their JSON form (as SQS carries them).
    resumed = registry.sweep([QuerySpec.from_dict(q.as_dict()) for q in queries])
    rest += [t.connection_id for t in resumed]
    assert sorted(seen + rest) == [f"c{i}" for i in range(9)] and not set(seen) & set(rest)


def test_a_query_spec_refuses_what_as_dict_never_writes() -> None:
    for junk in ({}, {"pk": 1}, {"pk": "x", "index": "Evil"}, {"pk": "x", "start": {"PK": 1}}):
        with pytest.raises(ValueError):
            QuerySpec.from_dict(junk)


def test_a_rate_bucket_on_the_connection_goes_with_it(
    registry: Registry, mem: MemoryTable, clock: Clock
) -> None:
    registry.register("a", "u1", ms(clock))
    mem.update(keys.conn_key("a"), Update(set={"rateTat": 5}))
    registry.remove("a")
    assert mem.items() == []


def test_live_targets_reads_each_connection_back_with_its_stored_endpoint(
    registry: Registry, mem: MemoryTable, clock: Clock
) -> None:
    # A continuation job names connection ids only (issue #22 item 5): the endpoint is the one
    # each registered with, and unknown or expired connections are left out, in job order.
    registry.register("old", "u0", ms(clock) - 7_600_000, endpoint="https://old/api")
    registry.register("b", "u2", ms(clock), endpoint="https://b/api")
    registry.register("a", "u1", ms(clock), endpoint="https://a/api")
    targets = registry.live_targets(["a", "ghost", "old", "b", "a"])
    assert [(t.connection_id, t.user_id, t.endpoint) for t in targets] == [
        ("a", "u1", "https://a/api"),
        ("b", "u2", "https://b/api"),
    ]
    assert registry.live_targets([]) == []


def test_live_targets_raises_when_a_read_is_left_unprocessed(
    registry: Registry, mem: MemoryTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unread connection must not pass for a closed one: the job fails and SQS redelivers.
    def unprocessed(*args: object, **kwargs: object) -> list[object]:
        assert kwargs.get("complete") is True
        raise UnprocessedItems("1 keys left unprocessed after retries")

    monkeypatch.setattr(mem, "batch_get", unprocessed)
    with pytest.raises(RegistryError, match="unprocessed"):
        registry.live_targets(["a"])
