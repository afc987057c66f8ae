"""AIMD pacing of ``@connections`` posts: fan-outs share the account's quota by backing off.

Every ``@connections`` call counts against the account's request quota (10,000 rps, burst
5,000, per Region: "Amazon API Gateway quotas",
https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html), shared by every
fan-out running at once in any container and by the account's other API Gateway traffic. No
container knows the others' rates, so each learns its share the way TCP does (additive
increase, multiplicative decrease): a send rate that grows by a constant number of posts/s per
second while the limiter is what holds the posts back, and halves on a 429. Senders that halve
together and grow alike converge on equal shares of whatever the quota leaves them.

One 429 storm is one congestion event: a 429 to a post sent before the last decrease says
nothing new (the rate that caused it is already gone), so it does not halve the rate again.
Retries stay botocore's (the transport retries the 429 with standard mode's backoff); the
retried post then waits for the limiter like any other.

``AimdRate`` is the arithmetic on an injectable clock; ``Pacer`` queues the posts on the
event loop and releases them at the rate, one timer for all of them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the event loop is the transport's, imported when it first posts
    import asyncio

RATE_CONTROLS = ("aimd", "off")  # FANOUT_RATE_CONTROL: pace by AIMD, or not at all

# The rate grows by this share of the maximum rate per second while the limiter binds: from
# half of a fair share back to it in about a second or two, the same step for every sender (equal
# steps are what makes AIMD converge on equal shares).
INCREASE_SHARE_PER_SECOND = 0.1
MIN_RATE = 10.0  # posts/s: a fan-out always progresses, however hard it was throttled
# The bucket holds this many seconds of posts, so a late timer does not lose the posts it
# owes, and a loop that wakes up late sends at most this much in one go.
BURST_SECONDS = 0.02
# The limiter "binds" if a post had to wait for it this recently; only then does success
# say the rate could be higher (an idle or latency-bound sender must not inflate its rate).
BINDING_WINDOW_SECONDS = 1.0


class AimdRate:
    """A token bucket whose rate is learnt: +``increase`` posts/s per second, x0.5 on a 429."""

    def __init__(
        self,
        initial_rate: float,
        max_rate: float,
        min_rate: float = MIN_RATE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < min_rate <= max_rate:
            raise ValueError(f"need 0 < min_rate <= max_rate, got {min_rate}, {max_rate}")
        self.max_rate = float(max_rate)
        self.min_rate = float(min(min_rate, max_rate))
        self.rate = float(min(max(initial_rate, self.min_rate), self.max_rate))
        self.increase = self.max_rate * INCREASE_SHARE_PER_SECOND
        self._clock = clock
        self._tokens = max(1.0, self.rate * BURST_SECONDS)
        self._last = clock()
        self._decreased_at = float("-inf")
        self._waited_at = float("-inf")
        self.decreases = 0

    def now(self) -> float:
        return self._clock()

    def take(self) -> float:
        """Spend a token and return 0.0, or return how long until one is due (none spent)."""
        now = self._clock()
        capacity = max(1.0, self.rate * BURST_SECONDS)
        self._tokens = min(capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        self._waited_at = now
        return (1.0 - self._tokens) / self.rate

    def on_success(self) -> None:
        if self._clock() - self._waited_at <= BINDING_WINDOW_SECONDS:
            # increase/rate per post: ``rate`` posts a second add ``increase`` per second.
            self.rate = min(self.max_rate, self.rate + self.increase / self.rate)

    def on_throttle(self, sent_at: float) -> None:
        """A 429 to a post sent at ``sent_at`` (``now()`` when its token was given)."""
        if sent_at < self._decreased_at:
            return  # the same storm: its rate is already halved
        self.rate = max(self.min_rate, self.rate / 2)
        self._decreased_at = self._clock()
        self._tokens = min(self._tokens, 0.0)  # no burst straight after a 429
        self.decreases += 1


class Pacer:
    """Releases waiting posts at ``AimdRate``'s rate, in arrival order; loop-side only."""

    def __init__(self, rate: AimdRate) -> None:
        self.rate = rate
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    async def acquire(self) -> float:
        """Wait for this post's turn; the send time to give ``on_throttle`` if it is a 429."""
        import asyncio  # cached after the first post

        if not self._waiters and self.rate.take() == 0.0:
            return self.rate.now()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._timer is None:
            self._release()
        await waiter
        return self.rate.now()

    def _release(self) -> None:
        import asyncio  # cached after the first post

        self._timer = None
        waiters = self._waiters
        while waiters:
            if waiters[0].done():  # cancelled while it waited: it takes no token
                waiters.popleft()
                continue
            wait = self.rate.take()
            if wait > 0.0:
                self._timer = asyncio.get_running_loop().call_later(wait, self._release)
                return
            waiters.popleft().set_result(None)
