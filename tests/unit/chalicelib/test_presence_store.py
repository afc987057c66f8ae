"""Presence storage on the in-memory table: enters, leaves, removals, rosters."""

from __future__ import annotations

import pytest

from chalicelib import keys
from chalicelib.presence_store import PresenceStore
from chalicelib.registry import ConnectionRecord, Registry
from tests.conftest import Clock
from tests.memtable import MemoryTable
from tests.unit.chalicelib.memory import ms


@pytest.fixture
def registry(mem: MemoryTable) -> Registry:
    return Registry(mem, ttl_seconds=7500, all_shards=2)


@pytest.fixture
def store(mem: MemoryTable, registry: Registry) -> PresenceStore:
    return PresenceStore(mem, registry, max_list=2)


def conn(registry: Registry, clock: Clock, cid: str, user: str) -> ConnectionRecord:
    return registry.register(cid, user, ms(clock))


def conns(mem: MemoryTable, room: str, user: str) -> set[str] | None:
    item = mem.get(keys.presence_key(room, user))
    return None if item is None else set(item.get("conns", set()))


def test_the_first_connection_of_a_user_enters_and_the_second_does_not(
    store: PresenceStore, registry: Registry, mem: MemoryTable, clock: Clock
) -> None:
    a1, a2 = conn(registry, clock, "a1", "u_a"), conn(registry, clock, "a2", "u_a")
    assert store.join(a1, "lobby") is True
    assert store.join(a2, "lobby") is False
    assert conns(mem, "lobby", "u_a") == {"a1", "a2"}
    assert registry.get("a2").rooms == {"lobby"}  # type: ignore[union-attr]


def test_only_the_last_connection_leaving_is_a_leave(
    store: PresenceStore, registry: Registry, mem: MemoryTable, clock: Clock
) -> None:
    a1, a2 = conn(registry, clock, "a1", "u_a"), conn(registry, clock, "a2", "u_a")
    store.join(a1, "lobby")
    store.join(a2, "lobby")
    assert store.leave(a1, "lobby") is False
    assert conns(mem, "lobby", "u_a") == {"a2"}
    assert store.leave(a2, "lobby") is True
    assert conns(mem, "lobby", "u_a") is None


def test_a_removed_connection_leaves_the_rooms_where_it_was_the_last(
    store: PresenceStore, registry: Registry, mem: MemoryTable, clock: Clock
) -> None:
    a1, a2 = conn(registry, clock, "a1", "u_a"), conn(registry, clock, "a2", "u_a")
    for room in ("lobby", "side"):
        store.join(a1, room)
    store.join(a2, "lobby")
    departure = store.remove("a1")
    assert departure is not None and (departure.user_id, departure.left) == ("u_a", ("side",))
    assert conns(mem, "lobby", "u_a") == {"a2"} and conns(mem, "side", "u_a") is None
    assert store.remove("a1") is None  # twice: nothing more happens


def test_members_counts_every_user_and_lists_the_first_few(
    store: PresenceStore, registry: Registry, clock: Clock
) -> None:
    for i, user in enumerate(("u_a", "u_a", "u_b", "u_c")):
        store.join(conn(registry, clock, f"c{i}", user), "lobby")
    roster = store.members("lobby")
    assert (roster.count, roster.truncated) == (3, True)
    assert roster.users == [
        {"userId": "u_a", "connections": 2},
        {"userId": "u_b", "connections": 1},
    ]
    assert store.small("lobby", 3) and not store.small("lobby", 2)


def test_presence_past_its_ttl_stops_counting(
    store: PresenceStore, registry: Registry, clock: Clock
) -> None:
    store.join(conn(registry, clock, "a", "u_a"), "lobby")
    clock.now += 7501  # its removal was lost: the ttl heals it
    assert store.members("lobby").count == 0


def test_small_with_counts_a_joining_user_whether_or_not_the_read_sees_them(
    mem: MemoryTable, registry: Registry, clock: Clock
) -> None:
    """A join reads the room's size beside its transaction, which may commit before or after
    that read: the joining user counts once either way (issue #26, one round trip less)."""
    from chalicelib.message_log import MessageLog
    from chalicelib.presence import Presence

    presence = Presence(registry, MessageLog(mem), max_members=2)
    presence.join(conn(registry, clock, "c0", "u0"), "lobby")
    joiner = conn(registry, clock, "c1", "u1")
    assert presence.small_with("lobby", "u1")  # read before the join commits: u0 + u1
    presence.join(joiner, "lobby")
    assert presence.small_with("lobby", "u1")  # read after it: the same two users
    assert not presence.small_with("lobby", "u2")  # a third user is over the cap of 2
    assert not Presence(registry, MessageLog(mem), max_members=0).small_with("lobby", "u9")
