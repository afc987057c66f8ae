from __future__ import annotations

import pytest

from chalicelib.broadcaster import Broadcaster, PayloadTooLarge
from chalicelib.management_api import Outcome
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


def test_a_failing_prune_is_reported_not_raised() -> None:
    gateway = FakeGateway()
    gateway.outcomes = {"c0": Outcome.GONE}

    def prune(cid: str) -> None:
        raise RuntimeError("dynamodb down")

    report = Broadcaster(gateway, prune=prune, workers=2).fan_out(targets(2), b"x")
    assert report.gone == 1 and report.outcomes["prune_failed"] == 1


def test_targets_are_posted_in_batches_as_they_are_read() -> None:
    class Recording(FakeGateway):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        def post_many(self, targets, data):  # type: ignore[no-untyped-def]
            self.batches.append(len(targets))
            return super().post_many(targets, data)

    gateway = Recording()
    report = Broadcaster(gateway, prune=lambda cid: None, batch_size=10).fan_out(targets(25), b"x")
    assert gateway.batches == [10, 10, 5] and report.delivered == 25


def test_a_broken_transport_fails_the_batch_without_raising() -> None:
    class Broken(FakeGateway):
        def post_many(self, targets, data):  # type: ignore[no-untyped-def]
            raise OSError("no network")

    report = Broadcaster(Broken(), prune=lambda cid: None).fan_out(targets(3), b"x")
    assert (report.delivered, report.failed) == (0, 3)


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


class Overlapping(FakeGateway):
    """Records when batches start and when the broadcaster waits for them."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    def start_many(self, targets, data):  # type: ignore[no-untyped-def]
        n = sum(1 for entry in self.log if entry.startswith("start"))
        self.log.append(f"start{n}")
        outcomes = self.post_many(targets, data)

        def wait() -> list[Outcome]:
            self.log.append(f"wait{n}")
            return outcomes

        return wait


def test_batches_are_started_before_earlier_ones_are_awaited() -> None:
    gateway = Overlapping()
    report = Broadcaster(gateway, prune=lambda cid: None, batch_size=10).fan_out(targets(25), b"x")
    assert gateway.log == ["start0", "start1", "start2", "wait0", "wait1", "wait2"]
    assert report.delivered == 25


def test_batches_in_flight_are_bounded() -> None:
    gateway = Overlapping()
    Broadcaster(gateway, prune=lambda cid: None, batch_size=1, max_pending=2).fan_out(
        targets(5), b"x"
    )
    assert gateway.log[:5] == ["start0", "start1", "start2", "wait0", "start3"]
