"""Whose 429 is it: the account's ``@connections`` quota, or one client that does not read?

API Gateway answers ``PostToConnection`` with ``LimitExceededException`` (HTTP 429) in two
cases its reference puts in one sentence: "The client is sending more than the allowed number
of requests per unit of time or the WebSocket client side buffer is full" (botocore's
``apigatewaymanagementapi`` service model, ``LimitExceededException`` and the
``PostToConnection`` errors; the same text in the API reference). The answer does not say
which. AWS documents nothing more about a client that stops reading: not the buffer's size, not
whether or when such a connection is closed (after which posts get ``GoneException``, 410, and
the fan-out prunes it). So both are designed for: a 429 that stays with one connection, and a
410 whenever API Gateway gives up on it.

Pacing (``rate_control.py``) must react to the quota only: one non-reading client used to halve
the container's rate for every fan-out, so sends to rooms it is not in slowed down with it. The
judge keeps, over a short window, the distinct connections posted to and those answered 429:

- **The quota** is a 429 spread across connections: at least ``min_distinct`` distinct
  connections answered 429 in the window, and at least ``min_share`` of the distinct
  connections posted to. Only then does the rate decrease (and for ``storm_hold`` seconds after,
  every 429 counts: a real storm hits the same connections again).
- **One connection's buffer**: a connection answered 429 again within ``strike_seconds`` of its
  last 429, outside a storm, is that connection's own; its ``give_up_after``-th such 429 in a
  row (4; a post it accepted in between starts the count again: a full buffer accepts nothing,
  while random quota 429s fall between successes), while at least ``min_distinct`` other
  connections were posted to in the window, gives it up for this fan-out (reported
  ``throttled``, counted failed, not retried): its retries would only wait out backoff and take the pacer's turns. Its
  repeat 429s are not counted towards a storm either, so a few non-reading clients cannot
  make one, however many fan-outs reach them.

The first 429s of a connection are retried as before (botocore's standard mode), so a client
that was only briefly slow still gets the message. ``clock`` is injectable; state is bounded by
the connections seen in the last ``strike_seconds``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 1.0
MIN_DISTINCT = 3
MIN_SHARE = 0.05
STRIKE_SECONDS = 5.0
STORM_HOLD_SECONDS = 2.0
# A connection's 429s in a row (each within STRIKE_SECONDS of the last, outside a storm) before
# it is given up on: random quota 429s of 20% hit one connection 4 times in a row 0.16% of the
# time (tests/reliability/test_faults.py), a full buffer every time.
GIVE_UP_AFTER = 4


@dataclass(frozen=True)
class Verdict:
    quota: bool  # evidence of the account's quota: the pacing should slow down
    give_up: bool  # this connection's own 429 again: do not retry it in this fan-out


class _Recent:
    """Keys seen in the last ``span`` seconds, oldest first (an LRU by time), each with how many
    times it was seen since it last dropped out of the window."""

    def __init__(self, span: float) -> None:
        self.span = span
        self._seen: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def add(self, key: str, now: float) -> int:
        """Record ``key`` at ``now``; how many times it is in the window now."""
        _, count = self._seen.get(key, (now, 0))
        self._seen[key] = (now, count + 1)
        self._seen.move_to_end(key)
        return count + 1

    def prune(self, now: float) -> None:
        seen = self._seen
        while seen:
            key, (at, _) = next(iter(seen.items()))
            if now - at <= self.span:
                return
            del seen[key]

    def __len__(self) -> int:
        return len(self._seen)

    def discard(self, key: str) -> None:
        self._seen.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._seen


class ThrottleJudge:
    """Attributes each 429 to the quota or to its connection (see the module docstring).
    Called from the transport's event loop only."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        window_seconds: float = WINDOW_SECONDS,
        min_distinct: int = MIN_DISTINCT,
        min_share: float = MIN_SHARE,
        strike_seconds: float = STRIKE_SECONDS,
        storm_hold_seconds: float = STORM_HOLD_SECONDS,
        give_up_after: int = GIVE_UP_AFTER,
    ) -> None:
        self._clock = clock
        self._posted = _Recent(window_seconds)
        self._throttled = _Recent(window_seconds)
        self._strikes = _Recent(strike_seconds)
        self._min_distinct = min_distinct
        self._min_share = min_share
        self._storm_hold = storm_hold_seconds
        self._give_up_after = give_up_after
        self._storm_at = float("-inf")
        self.given_up = 0
        self.storms = 0

    def posted(self, connection_id: str) -> None:
        now = self._clock()
        self._posted.add(connection_id, now)
        self._posted.prune(now)

    def delivered(self, connection_id: str) -> None:
        """A post to ``connection_id`` was accepted: its buffer is not full, its 429s so far
        were not its own (without this, a healthy client under random quota 429s collected
        strikes across successes and was given up on at its 4th 429 in 5 s)."""
        self._strikes.discard(connection_id)

    def in_storm(self) -> bool:
        return self._clock() - self._storm_at <= self._storm_hold

    def throttled(self, connection_id: str) -> Verdict:
        now = self._clock()
        self._strikes.prune(now)
        self._posted.prune(now)
        strikes = self._strikes.add(connection_id, now)
        storm = self.in_storm()
        if strikes > 1 and not storm:
            # The same connection again, and no sign of the quota: its own buffer. Its repeats
            # never count towards a storm; after ``give_up_after`` in a row it is given up on,
            # if others were posted to meanwhile: a retry alone in the window (the last of a
            # fan-out, backing off past the storm's hold) is no evidence against the quota.
            others = len(self._posted) - (connection_id in self._posted)
            if strikes < self._give_up_after or others < self._min_distinct:
                return Verdict(quota=False, give_up=False)
            self.given_up += 1
            return Verdict(quota=False, give_up=True)
        self._throttled.add(connection_id, now)
        self._throttled.prune(now)
        distinct = len(self._throttled)
        posted = max(len(self._posted), distinct)
        if distinct >= self._min_distinct and distinct >= self._min_share * posted:
            if not storm:
                self.storms += 1
            self._storm_at = now
            return Verdict(quota=True, give_up=False)
        return Verdict(quota=storm, give_up=False)
