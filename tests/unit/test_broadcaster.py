from __future__ import annotations

import threading
import time

import pytest

from chalicelib.broadcaster import Broadcaster, PayloadTooLarge
from chalicelib.gateway import Outcome
from chalicelib.registry import Target
from tests.helpers import FakeGateway


def targets(n: int) -> list[Target]:
    return [Target(f"c{i}") for i in range(n)]


def test_delivers_to_every_target_and_reports_it() -> None:
    gateway = FakeGateway()
    report = Broadcaster(gateway, prune=lambda cid: None, workers=4).fan_out(targets(50), b"x")
    assert (report.recipients, report.delivered, report.gone, report.failed) == (50, 50, 0, 0)
    assert all(gateway.sent[f"c{i}"] == [b"x"] for i in range(50))


def test_gone_connections_are_pruned_and_counted() -> None:
    gateway = FakeGateway()
    gateway.outcomes = {"c1": Outcome.GONE, "c3": Outcome.GONE}
    pruned: list[str] = []
    report = Broadcaster(gateway, prune=pruned.append, workers=4).fan_out(targets(5), b"x")
    assert sorted(pruned) == ["c1", "c3"]
    assert (report.delivered, report.gone, report.failed) == (3, 2, 0)


def test_failures_are_reported_and_do_not_stop_the_fan_out() -> None:
    gateway = FakeGateway()
    gateway.outcomes = {"c0": Outcome.THROTTLED, "c2": Outcome.TOO_LARGE, "c4": Outcome.FAILED}
    report = Broadcaster(gateway, prune=lambda cid: None, workers=2).fan_out(targets(6), b"x")
    assert (report.delivered, report.gone, report.failed) == (3, 0, 3)
    assert sorted(report.failed_ids) == ["c0", "c2", "c4"]
    assert report.outcomes == {"throttled": 1, "too_large": 1, "failed": 1, "delivered": 3}


def test_a_send_that_raises_counts_as_failed() -> None:
    class Exploding(FakeGateway):
        def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
            if connection_id == "c1":
                raise RuntimeError("boom")
            return super().post(connection_id, data, endpoint)

    report = Broadcaster(Exploding(), prune=lambda cid: None, workers=2).fan_out(targets(3), b"x")
    assert (report.delivered, report.failed) == (2, 1)


def test_a_failing_prune_is_reported_not_raised() -> None:
    gateway = FakeGateway()
    gateway.outcomes = {"c0": Outcome.GONE}

    def prune(cid: str) -> None:
        raise RuntimeError("dynamodb down")

    report = Broadcaster(gateway, prune=prune, workers=2).fan_out(targets(2), b"x")
    assert report.gone == 1 and report.outcomes["prune_failed"] == 1


def test_oversize_payload_is_refused_before_sending() -> None:
    gateway = FakeGateway()
    with pytest.raises(PayloadTooLarge):
        Broadcaster(gateway, prune=lambda cid: None).fan_out(targets(3), b"x" * 131073)
    assert not gateway.sent


def test_excluded_and_duplicate_targets_are_skipped() -> None:
    gateway = FakeGateway()
    report = Broadcaster(gateway, prune=lambda cid: None).fan_out(
        [Target("a"), Target("b"), Target("a"), Target("me")], b"x", exclude="me"
    )
    assert report.recipients == 2 and "me" not in gateway.sent


def test_sends_run_concurrently() -> None:
    class Slow(FakeGateway):
        def __init__(self) -> None:
            super().__init__()
            self.active = 0
            self.peak = 0
            self.guard = threading.Lock()

        def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
            with self.guard:
                self.active += 1
                self.peak = max(self.peak, self.active)
            time.sleep(0.02)
            with self.guard:
                self.active -= 1
            return Outcome.DELIVERED

    gateway = Slow()
    started = time.perf_counter()
    Broadcaster(gateway, prune=lambda cid: None, workers=16).fan_out(targets(64), b"x")
    elapsed = time.perf_counter() - started
    assert gateway.peak > 8
    assert elapsed < 64 * 0.02 / 4  # far faster than one after another
