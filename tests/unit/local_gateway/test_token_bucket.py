"""The account quota's token bucket, on a fake clock."""

from __future__ import annotations

import pytest

from local_gateway.token_bucket import TokenBucket, default_burst
from tests.helpers import FakeClock


def takes(bucket: TokenBucket, n: int) -> int:
    return sum(bucket.try_take() for _ in range(n))


def test_a_full_bucket_lets_a_burst_through_then_refuses() -> None:
    bucket = TokenBucket(10, burst=5, clock=FakeClock())
    assert takes(bucket, 8) == 5


def test_tokens_come_back_at_the_rate_and_never_past_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=5, clock=clock)
    takes(bucket, 5)
    clock.now += 0.25  # 2.5 tokens: two requests, and half a token left over
    assert takes(bucket, 5) == 2
    clock.now += 0.0625  # 0.5 left + 0.625
    assert takes(bucket, 5) == 1
    clock.now += 60  # an idle minute refills to the burst, not to 600
    assert takes(bucket, 100) == 5


def test_sustained_demand_gets_exactly_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst=500, clock=clock)
    granted = 0
    for _ in range(10_000):  # 2 s of 5,000 requests/s
        clock.now += 0.0002
        granted += bucket.try_take()
    assert granted == pytest.approx(500 + 2_000, abs=2)


def test_burst_defaults_to_half_the_rate_as_on_aws() -> None:
    assert TokenBucket(10_000).burst == 5_000 == default_burst(10_000)
    assert TokenBucket(1).burst == 1  # never below one request


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-1, None), (float("nan"), None), (5, 0.5)])
def test_bad_rates_are_refused(rate: float, burst: float | None) -> None:
    with pytest.raises(ValueError, match="rate|burst"):
        TokenBucket(rate, burst)
