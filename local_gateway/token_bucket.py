"""The account's request quota, as a token bucket shared by every ``@connections`` caller.

API Gateway throttles with the token bucket algorithm: "the number of requests per second"
(the steady-state rate) refills the bucket and "burst" is its capacity; a request that finds no
token is answered 429 ``LimitExceededException``. The account-level quota (10,000 rps, burst
5,000, per Region) is shared by every API of the account, and "Use @connections commands in
your backend service" calls count against it too. Sources: "Throttle requests to your REST APIs
for better throughput in API Gateway"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/api-gateway-request-throttling.html)
and "Amazon API Gateway quotas" (https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html).

A throttled request takes no token: only the requests that get through spend the quota.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


def default_burst(rate: float) -> float:
    """AWS's ratio of burst to rate (5,000 for 10,000 rps), at least one request."""
    return max(1.0, rate / 2)


class TokenBucket:
    """``rate`` tokens per second into a bucket of ``burst``; it starts full, as AWS's does.

    ``clock`` is a monotonic clock in seconds (injectable for tests). Thread-safe: the gateway
    answers on one event loop, but a bench sink or a test may share a bucket across threads.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        capacity = default_burst(rate) if burst is None else burst
        if not capacity >= 1:
            raise ValueError(f"burst must be at least 1, got {capacity}")
        self.rate = float(rate)
        self.burst = float(capacity)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()
        self._lock = threading.Lock()

    def try_take(self) -> bool:
        """Spend one token if there is one; False means: answer this request 429."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
