from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from chalicelib.broadcaster import Broadcaster, PayloadTooLarge
from chalicelib.management_api import Outcome
from chalicelib.registry import Target
from tests.helpers import FakeClock, FakeGateway


def targets(n: int) -> list[Target]:
    return [Target(f"c{i}") for i in range(n)]


def test_delivers_to_every_target_and_reports_it() -> None:
    gateway = FakeGateway()
    report = Broadcaster(gateway, batch_size=200).fan_out(targets(50), b"x")
    assert (report.recipients, report.delivered, report.gone, report.failed) == (50, 50, 0, 0)
    assert all(gateway.sent[f"c{i}"] == [b"x"] for i in range(50))


def test_gone_connections_are_counted_and_returned_not_removed() -> None:
    gateway = FakeGateway()
    gateway.outcomes = {"c1": Outcome.GONE, "c3": Outcome.GONE}
    report = Broadcaster(gateway).fan_out(targets(5), b"x")
    assert sorted(report.gone_ids) == ["c1", "c3"]
    assert (report.delivered, report.gone, report.failed) == (3, 2, 0)


def test_failures_are_reported_and_do_not_stop_the_fan_out() -> None:
    gateway = FakeGateway()
    gateway.outcomes = {"c0": Outcome.THROTTLED, "c2": Outcome.TOO_LARGE, "c4": Outcome.FAILED}
    report = Broadcaster(gateway, batch_size=2).fan_out(targets(6), b"x")
    assert (report.delivered, report.gone, report.failed) == (3, 0, 3)
    assert sorted(report.failed_ids) == ["c0", "c2", "c4"]
    assert report.outcomes == {"throttled": 1, "too_large": 1, "failed": 1, "delivered": 3}
    assert report.throttled == 1 and report.gone_ids == ()


def test_a_continuation_moves_the_deadline_remainder_into_continued() -> None:
    clock = iter(range(1000))
    broadcaster = Broadcaster(
        FakeGateway(), batch_size=10, deadline_seconds=25.0, clock=lambda: float(next(clock))
    )
    report = broadcaster.fan_out(targets(100), b"x")
    assert report.stopped_early and report.unstarted
    moved = report.continued_by(also_read=3)
    assert moved.failed == report.failed - len(report.unstarted)
    assert moved.continued == len(report.unstarted) + 3
    assert "deadline" not in moved.outcomes and report.outcomes["deadline"] > 0  # a copy


def test_targets_are_posted_in_batches_as_they_are_read() -> None:
    class Recording(FakeGateway):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        def post_many(self, targets, data):  # type: ignore[no-untyped-def]
            self.batches.append(len(targets))
            return super().post_many(targets, data)

    gateway = Recording()
    report = Broadcaster(gateway, batch_size=10).fan_out(targets(25), b"x")
    assert gateway.batches == [10, 10, 5] and report.delivered == 25


def test_a_broken_transport_fails_the_batch_without_raising() -> None:
    class Broken(FakeGateway):
        def post_many(self, targets, data):  # type: ignore[no-untyped-def]
            raise OSError("no network")

    report = Broadcaster(Broken()).fan_out(targets(3), b"x")
    assert (report.delivered, report.failed) == (0, 3)


def test_oversize_payload_is_refused_before_sending() -> None:
    gateway = FakeGateway()
    with pytest.raises(PayloadTooLarge):
        Broadcaster(gateway).fan_out(targets(3), b"x" * 131073)
    assert not gateway.sent


def test_excluded_and_duplicate_targets_are_skipped() -> None:
    gateway = FakeGateway()
    report = Broadcaster(gateway).fan_out(
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
    report = Broadcaster(gateway, batch_size=10).fan_out(targets(25), b"x")
    assert gateway.log == ["start0", "start1", "start2", "wait0", "wait1", "wait2"]
    assert report.delivered == 25


def test_batches_in_flight_are_bounded() -> None:
    gateway = Overlapping()
    Broadcaster(gateway, batch_size=1, max_pending=2).fan_out(targets(5), b"x")
    assert gateway.log[:5] == ["start0", "start1", "start2", "wait0", "start3"]


class SlowBatches(FakeGateway):
    """Each batch takes ``seconds`` of the fake clock to start (its posts), as a slow one would."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock = clock
        self.seconds = seconds
        self.started: list[list[str]] = []
        self.waited = 0

    def start_many(self, targets, data):  # type: ignore[no-untyped-def]
        self.started.append([t.connection_id for t in targets])
        self.clock.now += self.seconds
        wait = super().start_many(targets, data)

        def finish() -> list[Outcome]:
            self.waited += 1
            return wait()

        return finish


def test_a_fan_out_past_its_deadline_starts_no_new_batch_and_reports_the_rest_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    gateway = SlowBatches(clock, seconds=10.0)
    broadcaster = Broadcaster(gateway, batch_size=10, deadline_seconds=25.0, clock=clock)
    caplog.set_level("INFO", logger="switchboard")
    report = broadcaster.fan_out(targets(100), b"x", scope="all")
    # Batches start at 0 s, 10 s and 20 s; at 30 s the deadline (25 s) has passed.
    assert len(gateway.started) == 3 and gateway.waited == 3
    assert (report.recipients, report.delivered, report.failed) == (31, 30, 1)
    assert report.outcomes == {"delivered": 30, "deadline": 1}
    assert report.failed_ids == ("c30",) and "c30" not in gateway.sent
    assert report.stopped_early and report.as_dict()["stoppedEarly"] is True
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "switchboard"]
    assert [line["event"] for line in lines] == ["fanout_start", "fanout_deadline"]
    assert lines[0] == {"event": "fanout_start", "scope": "all", "deadlineSeconds": 25.0}
    assert lines[1]["attempted"] == 30 and lines[1]["notStarted"] == 1


def test_targets_read_but_not_started_at_the_deadline_are_failed_with_reason_deadline() -> None:
    clock = FakeClock()

    def slow_reads() -> Iterator[Target]:
        for target in targets(30):
            clock.now += 1.0  # one second per target read: a slow registry
            yield target

    gateway = SlowBatches(clock, seconds=0.0)
    report = Broadcaster(gateway, batch_size=10, clock=clock).fan_out(
        slow_reads(), b"x", deadline=clock.now + 15.5
    )
    # c0..c9 went out at 10 s; c10..c15 were read by 16 s, past the deadline, never posted;
    # c16.. were never read, so they are in no count.
    assert gateway.started == [[f"c{i}" for i in range(10)]]
    assert (report.recipients, report.delivered, report.failed) == (16, 10, 6)
    assert report.outcomes["deadline"] == 6 and report.stopped_early


def test_a_fan_out_within_its_deadline_is_not_stopped_early() -> None:
    clock = FakeClock()
    gateway = SlowBatches(clock, seconds=1.0)
    report = Broadcaster(gateway, batch_size=10, deadline_seconds=25.0, clock=clock).fan_out(
        targets(100), b"x"
    )
    assert report.delivered == 100 and not report.stopped_early
    assert "stoppedEarly" not in report.as_dict()


def test_a_tiny_real_deadline_stops_a_fan_out_of_slow_batches() -> None:
    class Sleepy(FakeGateway):
        def start_many(self, targets, data):  # type: ignore[no-untyped-def]
            time.sleep(0.05)
            return super().start_many(targets, data)

    broadcaster = Broadcaster(Sleepy(), batch_size=1, deadline_seconds=0.5)
    result = broadcaster.fan_out(targets(50), b"x")
    assert result.stopped_early and 0 < result.delivered < 50
    assert result.delivered + result.outcomes["deadline"] == result.recipients
