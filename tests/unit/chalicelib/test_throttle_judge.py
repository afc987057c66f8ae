"""The ThrottleJudge tells the account quota's 429s from one non-reading client's (#22 item 2)."""

from __future__ import annotations

from chalicelib.throttle_judge import ThrottleJudge
from tests.conftest import Clock


def judge(clock: Clock) -> ThrottleJudge:
    return ThrottleJudge(clock=clock)


def test_one_connection_repeating_429_never_counts_as_the_quota() -> None:
    clock = Clock(100.0)
    j = judge(clock)
    verdicts = []
    for _ in range(50):  # a fan-out a tenth of a second, each reaching the slow client
        for cid in ("slow", *(f"r{i}" for i in range(10))):
            j.posted(cid)
        verdicts.append(j.throttled("slow"))
        clock.now += 0.1
    assert not any(v.quota for v in verdicts)
    # Its first 429s are retried (random quota 429s hit one connection a few times in a row);
    # from the 4th in a row it is given up on.
    assert not any(v.give_up for v in verdicts[:3])
    assert all(v.give_up for v in verdicts[3:]) and j.storms == 0


def test_a_few_slow_clients_alone_in_a_window_are_not_the_quota() -> None:
    clock = Clock(100.0)
    j = judge(clock)
    for cid in ("a", "b", *(f"r{i}" for i in range(100))):
        j.posted(cid)
    assert [j.throttled(c).quota for c in ("a", "b")] == [False, False]  # 2 < min_distinct
    for cid in ("c", "d", "e"):  # 5 of 105: under the 5% share
        j.posted(cid)
        assert not j.throttled(cid).quota, cid


def test_429s_spread_across_connections_are_the_quota() -> None:
    clock = Clock(100.0)
    j = judge(clock)
    for i in range(20):
        j.posted(f"c{i}")
    assert [j.throttled(f"c{i}").quota for i in range(4)] == [False, False, True, True]
    assert j.storms == 1 and j.in_storm()
    # In a storm the same connections 429 again: those count, and are retried.
    again = j.throttled("c0")
    assert again.quota and not again.give_up
    clock.now += 10  # the storm is over and forgotten
    assert not j.in_storm()
    assert not j.throttled("c0").quota


def test_a_connection_is_forgiven_after_the_strike_window() -> None:
    clock = Clock(100.0)
    j = judge(clock)
    j.posted("slow")
    assert not j.throttled("slow").give_up
    clock.now += 6  # past STRIKE_SECONDS: a fresh start, retried again
    j.posted("slow")
    assert not j.throttled("slow").give_up


def test_a_delivery_starts_the_count_again() -> None:
    # Random quota 429s outside a storm: a healthy client's 429s fall between accepted posts
    # and never add up to a give-up; a full buffer accepts nothing, so it still does.
    clock = Clock(100.0)
    j = judge(clock)
    verdicts = []
    for _ in range(10):
        j.posted("healthy")
        verdicts.append(j.throttled("healthy"))
        j.posted("healthy")
        j.delivered("healthy")
        clock.now += 0.5
    assert not any(v.give_up for v in verdicts) and j.given_up == 0
    for _ in range(4):
        for cid in ("healthy", "r1", "r2", "r3"):
            j.posted(cid)
        last = j.throttled("healthy")
    assert last.give_up


def test_a_retry_alone_in_the_window_is_not_given_up() -> None:
    # The last post of a fan-out, backing off past the storm's hold: nothing else is posted,
    # so its 429s say nothing about its buffer (the soak lost a delivery to this at 10 attempts).
    clock = Clock(100.0)
    j = judge(clock)
    for _ in range(10):
        j.posted("last")
        assert not j.throttled("last").give_up
        clock.now += 2.0
    j.posted("last")
    for cid in ("r1", "r2", "r3"):  # others go through meanwhile: now it is its own buffer
        j.posted(cid)
    assert j.throttled("last").give_up
