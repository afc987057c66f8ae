"""An admission gate: load that adapts to the machine instead of a fixed guess of what it takes
(the churn's sessions, the reconnecting clients' returns)."""

from __future__ import annotations

import asyncio
import collections
import time


class Admission:
    """Lets new load in (a churning session, a reconnecting client's return) only while the
    stack keeps up.

    Every request's round trip is noted; while the median of those finished in the last
    ``window`` seconds exceeds ``threshold`` (derived from the set-up's measured cost), new
    load waits. What is already under way carries on, finishes its requests and brings the
    median down; with nothing recent the gate is open.
    """

    # Handshakes under way at once: 150 churners starting together would swamp the stack
    # before the gate has a single round trip to go by; this ramps them in.
    STARTING = 8
    # A send (a fan-out to every live client, pruning the ones that vanished, each prune
    # announcing a leave) may take this many thresholds before the gate closes too.
    SEND_FACTOR = 5

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.starting = asyncio.Semaphore(self.STARTING)
        self.last_send = (0.0, 0.0)  # the latest send: when it finished, its round trip
        self.window = 4 * threshold
        self.recent: collections.deque[tuple[float, float]] = collections.deque()
        self.waited = 0.0  # seconds spent waiting at the gate, summed over every waiter

    def note(self, started: float, send: bool = False) -> None:
        now = time.monotonic()
        if send:
            self.last_send = (now, now - started)
        else:
            self.recent.append((now, now - started))

    def busy(self) -> bool:
        horizon = time.monotonic() - self.window
        while self.recent and self.recent[0][0] < horizon:
            self.recent.popleft()
        finished, seconds = self.last_send
        # A slow send counts while it is recent: once the senders stop, it must not hold the
        # gate shut (returns waited their whole timeout at the end of a run).
        if finished >= horizon and seconds > self.SEND_FACTOR * self.threshold:
            return True
        if len(self.recent) < 5:
            return False
        ordered = sorted(seconds for _, seconds in self.recent)
        return ordered[len(ordered) // 2] > self.threshold

    async def wait(self, deadline: float) -> None:
        started = time.monotonic()
        while self.busy() and time.monotonic() < deadline:
            await asyncio.sleep(self.threshold / 4)
        self.waited += time.monotonic() - started
