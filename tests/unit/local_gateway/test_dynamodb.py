"""The embedded DynamoDB serves queued requests in arrival order (``FifoLock``)."""

from __future__ import annotations

import threading
import time

from local_gateway.dynamodb import FifoLock


def test_waiters_get_the_lock_in_arrival_order() -> None:
    lock = FifoLock()
    order: list[int] = []
    threads: list[threading.Thread] = []
    lock.__enter__()  # held while the waiters queue up, one after another

    def take(n: int) -> None:
        with lock:
            order.append(n)

    for n in range(20):
        thread = threading.Thread(target=take, args=(n,))
        thread.start()
        threads.append(thread)
        # Each waiter is queued before the next starts (its wait is on its own event).
        deadline = time.monotonic() + 10
        while len(lock._waiters) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(lock._waiters) == n + 1
    lock.__exit__(None, None, None)
    for thread in threads:
        thread.join(10)
    assert order == list(range(20))
    assert not lock._held and not lock._waiters


def test_an_uncontended_lock_is_free_again_after_release() -> None:
    lock = FifoLock()
    with lock:
        assert lock._held
    with lock:
        pass
    assert not lock._held
