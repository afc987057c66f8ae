"""The abuse limits on the in-memory table: connections and rooms per user, frames per connection."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from chalicelib import keys
from chalicelib.config import Settings
from chalicelib.limits import Bucket, Limits, SlotClaim
from chalicelib.registry import ItemConflict, Registry
from chalicelib.table import Update
from tests.conftest import Clock
from tests.memtable import MemoryTable
from tests.unit.chalicelib.memory import ms


@pytest.fixture
def registry(mem: MemoryTable) -> Registry:
    return Registry(mem, ttl_seconds=7500, all_shards=2)


def limits(mem: MemoryTable, **settings: object) -> Limits:
    return Limits(mem, Settings(table_name="t", auth_mode="none", **settings))  # type: ignore[arg-type]


def test_slots_are_offered_until_the_cap_and_expire_with_their_connection(
    mem: MemoryTable, registry: Registry, clock: Clock
) -> None:
    cap = limits(mem, max_connections_per_user=3)
    for i in range(3):
        claims = cap.slot_claims("u1")
        assert len(claims) == 3 - i
        registry.register(
            f"c{i}",
            "u1",
            ms(clock),
            slot=partial(claims[0].op, f"c{i}", now_ms=ms(clock)),
            slot_number=claims[0].slot,
        )
    assert cap.slot_claims("u1") == []
    assert len(cap.slot_claims("u2")) == 3
    stale = SlotClaim("u1", 0)  # read before c0 took slot 0: its condition now fails
    with pytest.raises(ItemConflict):
        registry.register("x", "u1", ms(clock), slot=partial(stale.op, "x", now_ms=0))
    assert registry.get("x") is None  # nothing of the refused handshake was written
    clock.now += 7501  # their $disconnect never came: past the ttl their slots are free
    assert len(cap.slot_claims("u1")) == 3


def test_the_rooms_cap_spans_every_connection_of_the_user(
    mem: MemoryTable, registry: Registry, clock: Clock
) -> None:
    cap = limits(mem, max_rooms_per_user=2)
    a = registry.register("a", "u1", ms(clock))
    b = registry.register("b", "u1", ms(clock))
    registry.join(a, "r1")
    registry.join(b, "r2")
    b = registry.get("b")  # type: ignore[assignment]
    assert cap.user_rooms("u1") == {"r1", "r2"}
    assert cap.room_refusal(b, "r3") == ("at most 2 rooms per user, across all of its connections")
    assert cap.room_refusal(b, "r1") is None  # another connection holds it: no new room


def test_a_burst_drains_the_bucket_and_time_refills_it_exactly(
    mem: MemoryTable, registry: Registry, clock: Clock
) -> None:
    bucket = limits(mem, message_rate=10.0, message_burst=20)
    registry.register("a", "u1", ms(clock))
    verdicts = [bucket.take_frame("a") for _ in range(21)]
    assert [v.allowed for v in verdicts] == [True] * 20 + [False]
    assert verdicts[20].retry_after_ms == 100
    for _ in range(30):  # one token back per 0.1 s, every step, however many steps
        clock.now += 0.1
        assert bucket.take_frame("a").allowed
        assert not bucket.take_frame("a").allowed
    clock.now += 5.0  # a quiet spell refills to the burst, no further
    assert [bucket.take_frame("a").allowed for _ in range(21)] == [True] * 20 + [False]


def test_an_unknown_connection_is_let_through(mem: MemoryTable) -> None:
    assert limits(mem).take_frame("ghost").allowed


def test_a_frame_of_cost_n_takes_n_tokens_and_waits_for_all_of_them(
    mem: MemoryTable, registry: Registry, clock: Clock
) -> None:
    bucket = limits(mem, message_rate=10.0, message_burst=20)
    registry.register("a", "u1", ms(clock))
    assert bucket.take_frame("a", 10).allowed  # 10 left
    assert bucket.take_frame("a", 10).allowed  # 0 left
    refused = bucket.take_frame("a", 10)
    assert not refused.allowed and refused.retry_after_ms == 1000  # 10 tokens at 10/s
    clock.now += 0.5
    assert not bucket.take_frame("a", 10).allowed  # 5 back: still short
    assert bucket.take_frame("a", 5).allowed
    clock.now += 60
    assert bucket.take_frame("a", 500).allowed  # over the burst: takes the whole bucket
    assert not bucket.take_frame("a").allowed


def test_the_replay_budget_is_per_user_reserved_and_refunded(
    mem: MemoryTable, clock: Clock
) -> None:
    budget = limits(mem, replay_rate=100.0, replay_burst=300)
    assert budget.take_replay("u1", 200).allowed  # no item yet: created, 100 left
    refused = budget.take_replay("u1", 200)
    assert not refused.allowed and refused.retry_after_ms == 1000
    assert refused.frame(7)["message"].startswith("replay budget of this user spent")
    assert budget.take_replay("u2", 200).allowed  # another user's budget is its own
    budget.refund_replay("u1", 200, 50)  # the frame replayed 50 of its 200
    assert budget.take_replay("u1", 200).allowed  # 250 were left
    assert not budget.take_replay("u1", 100).allowed
    clock.now += 3600
    budget.refund_replay("u1", 1000, 0)  # a refund into a full bucket adds nothing
    assert [budget.take_replay("u1", 100).allowed for _ in range(4)] == [True] * 3 + [False]


def test_a_reservation_over_the_burst_is_refunded_from_what_it_was_charged(
    mem: MemoryTable, clock: Clock
) -> None:
    budget = limits(mem, replay_rate=1.0, replay_burst=100)
    assert budget.take_replay("u1", 200).allowed  # charged the whole bucket: 100
    budget.refund_replay("u1", 200, 150)  # replayed more than charged: nothing comes back
    assert not budget.take_replay("u1", 1).allowed
    clock.now += 100  # full again
    assert budget.take_replay("u1", 200).allowed
    budget.refund_replay("u1", 200, 40)  # 60 of the 100 charged come back
    assert budget.take_replay("u1", 60).allowed
    assert not budget.take_replay("u1", 1).allowed


def test_a_replay_take_whose_writes_race_three_times_is_refused_not_let_through(
    mem: MemoryTable, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refund moves the replay tat back, so three writes can all miss their branch; the
    frame is then refused (retry in 1 ms), never allowed without a charge."""
    budget = limits(mem, replay_rate=1.0, replay_burst=1000)
    assert budget.take_replay("u1", 700).allowed
    real = Bucket._conditional
    now_us = round(clock.now * 1_000_000)
    moves = iter([now_us - 50_000_000, now_us + 200_000_000])

    def racing(*args: Any) -> Any:
        new, old = real(*args)
        step = next(moves, None)
        if new is None and step is not None:  # another frame writes between our two calls
            mem.update(keys.user_limits_key("u1"), Update(set={"replayTat": step}))
        return new, old

    monkeypatch.setattr(Bucket, "_conditional", staticmethod(racing))
    verdict = budget.take_replay("u1", 200)
    assert not verdict.allowed and verdict.retry_after_ms == 1


def test_a_large_cap_offers_a_bounded_random_sample_of_free_slots(
    mem: MemoryTable, registry: Registry, clock: Clock
) -> None:
    """A cap of 100,000 must not build 100,000 claims per handshake (each $connect took
    ~200 ms); a handful of distinct free slots, random, are enough to spread handshakes."""
    cap = limits(mem, max_connections_per_user=100_000)
    first = cap.slot_claims("u1")
    registry.register(
        "c0", "u1", ms(clock), slot=partial(first[0].op, "c0", now_ms=ms(clock)),
        slot_number=first[0].slot,
    )  # fmt: skip
    offered = cap.slot_claims("u1")
    slots = [c.slot for c in offered]
    assert 1 <= len(slots) <= 32 and len(set(slots)) == len(slots)
    assert first[0].slot not in slots and all(0 <= n < 100_000 for n in slots)
    assert slots != [c.slot for c in cap.slot_claims("u1")]  # random, not the lowest first
    small = limits(mem, max_connections_per_user=5)
    assert sorted(c.slot for c in small.slot_claims("u2")) == [0, 1, 2, 3, 4]
