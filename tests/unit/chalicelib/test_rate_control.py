"""AIMD pacing of @connections posts: the learnt rate on a fake clock, the pacer on a loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from chalicelib.rate_control import BURST_SECONDS, AimdRate, Pacer
from tests.helpers import FakeClock


def sends_in(rate: AimdRate, clock: FakeClock, seconds: float, step: float = 0.001) -> int:
    """How many posts a sender that always has one waiting gets out in ``seconds``."""
    sent = 0
    for _ in range(round(seconds / step)):
        clock.now += step
        while rate.take() == 0.0:
            sent += 1
    return sent


def test_posts_go_out_at_the_rate() -> None:
    clock = FakeClock(50.0)
    rate = AimdRate(200, 1000, clock=clock)
    assert sends_in(rate, clock, 2.0) == pytest.approx(400, abs=5)


def test_a_waiting_post_is_told_when_its_token_is_due() -> None:
    clock = FakeClock(50.0)
    rate = AimdRate(40, 1000, clock=clock)  # a bucket of one post (40/s x 20 ms < 1)
    assert rate.take() == 0.0
    assert rate.take() == pytest.approx(0.025)
    clock.now += 0.004
    assert rate.take() == pytest.approx(0.021)


def test_a_429_halves_the_rate_down_to_the_floor() -> None:
    clock = FakeClock(50.0)
    rate = AimdRate(80, 1000, min_rate=15, clock=clock)
    for expected in (40, 20, 15, 15):
        rate.on_throttle(sent_at=clock.now)
        clock.now += 0.01
        assert rate.rate == expected


def test_429s_to_posts_sent_before_the_last_decrease_do_not_halve_again() -> None:
    clock = FakeClock(50.0)
    rate = AimdRate(800, 1000, clock=clock)
    sent_in_the_storm = clock.now
    clock.now += 0.005
    for _ in range(30):  # one storm: thirty 429s to posts sent at the old rate
        rate.on_throttle(sent_at=sent_in_the_storm)
    assert rate.rate == 400 and rate.decreases == 1
    rate.on_throttle(sent_at=clock.now)  # sent after the decrease: a new event
    assert rate.rate == 200 and rate.decreases == 2


def test_success_adds_a_constant_step_per_second_while_the_limiter_binds() -> None:
    clock = FakeClock(50.0)
    rate = AimdRate(100, 1000, clock=clock)  # grows by 10% of 1,000 = 100 posts/s per second
    started = clock.now
    while clock.now - started < 1.0:  # one second of paced posts, each one a success
        while rate.take() > 0.0:
            clock.now += 0.001
        rate.on_success()
    assert rate.rate == pytest.approx(200, rel=0.1)


def test_success_does_not_grow_a_rate_that_holds_nothing_back() -> None:
    clock = FakeClock(50.0)
    rate = AimdRate(100, 1000, clock=clock)
    for _ in range(50):  # one post every 50 ms: the pool or the latency is the limit
        clock.now += 0.05
        assert rate.take() == 0.0
        rate.on_success()
    assert rate.rate == 100


def test_the_rate_stays_within_the_floor_and_the_cap() -> None:
    clock = FakeClock(50.0)
    rate = AimdRate(5000, 1000, min_rate=10, clock=clock)
    assert rate.rate == 1000
    rate.take()
    rate._waited_at = clock.now  # binding
    for _ in range(1000):
        rate.on_success()
    assert rate.rate == 1000
    assert AimdRate(1, 1000, min_rate=10, clock=clock).rate == 10
    with pytest.raises(ValueError, match="min_rate"):
        AimdRate(10, 5, min_rate=10)


def test_equal_senders_converge_on_equal_shares_of_a_shared_quota() -> None:
    # Two AIMD senders on one clock behind a 400/s quota; one starts at the cap, one at the
    # floor. Every post the quota cannot take is a 429 to its sender.
    from local_gateway.token_bucket import TokenBucket

    clock = FakeClock(50.0)
    quota = TokenBucket(400, burst=200, clock=clock)
    senders = [AimdRate(1000, 1000, clock=clock), AimdRate(10, 1000, clock=clock)]
    sent = [0, 0]
    throttled = 0
    for tick in range(40_000):  # 40 s
        clock.now += 0.001
        for i in (0, 1) if tick % 2 else (1, 0):  # neither is always first at the quota
            rate = senders[i]
            while rate.take() == 0.0:
                if quota.try_take():
                    rate.on_success()
                    sent[i] += 1 if tick >= 30_000 else 0
                else:
                    rate.on_throttle(clock.now)
                    throttled += 1
    assert sum(sent) == pytest.approx(4000, rel=0.1)  # the last 10 s: the quota, used
    assert sent[0] == pytest.approx(sent[1], rel=0.25)
    assert throttled < 0.05 * 16000


def test_the_pacer_releases_waiting_posts_in_order_at_the_rate() -> None:
    async def run() -> tuple[list[int], float]:
        pacer = Pacer(AimdRate(200, 200))
        order: list[int] = []

        async def post(i: int) -> None:
            await pacer.acquire()
            order.append(i)

        started = time.monotonic()
        await asyncio.gather(*(post(i) for i in range(60)))
        return order, time.monotonic() - started

    order, elapsed = asyncio.run(run())
    assert order == list(range(60))
    burst = int(200 * BURST_SECONDS)
    assert (60 - burst) / 200 * 0.9 < elapsed < 1.0  # ~0.28 s at 200/s, not at once


def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    async def run() -> list[str]:
        pacer = Pacer(AimdRate(20, 20))  # one post per 50 ms
        done: list[str] = []

        async def post(name: str) -> None:
            await pacer.acquire()
            done.append(name)

        first = asyncio.ensure_future(post("first"))
        doomed = asyncio.ensure_future(post("doomed"))
        last = asyncio.ensure_future(post("last"))
        await asyncio.sleep(0.01)
        doomed.cancel()
        await asyncio.gather(first, last)
        return done

    assert asyncio.run(run()) == ["first", "last"]
