"""A fan-out stopped by its deadline continues from SQS jobs until every recipient is posted once.

moto's SQS and DynamoDB; the broadcaster's clock ticks once per call, so the deadline falls
after a fixed number of reads; Query pages of 7 items, so the rest includes unfinished Queries.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import boto3
import pytest

from chalicelib.broadcaster import Broadcaster
from chalicelib.continuation import BadJob, Continuation, Job
from chalicelib.continuation_guard import JobLedger, JobSigner
from chalicelib.message_log import MessageLog
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from tests.conftest import Clock, make_switchboard
from tests.helpers import FakeGateway

N = 300
KEY = b"k" * 32
# The endpoint every connection registered with at $connect (what the worker must post to).
STORED = "https://abc123.execute-api.us-east-1.amazonaws.com/api"


@pytest.fixture
def wired(
    ddb: Any, registry: Registry, gateway: FakeGateway, clock: Clock
) -> tuple[Switchboard, Any, str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    # A received job stays invisible until drain() deletes it, however slow the machine: with
    # SQS's default 30 s visibility timeout a loaded run saw jobs come back and posts doubled.
    # 43,200 s is the maximum (CreateQueue, VisibilityTimeout: "0 to 43,200 (12 hours)",
    # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html).
    url = sqs.create_queue(QueueName="continuation", Attributes={"VisibilityTimeout": "43200"})[
        "QueueUrl"
    ]
    registry.page_size = 7
    ticks = itertools.count()
    broadcaster = Broadcaster(
        gateway, batch_size=10, deadline_seconds=40,
        clock=lambda: float(next(ticks)),
    )  # fmt: skip
    sb = make_switchboard(registry, gateway)
    sb.broadcaster = broadcaster
    message_log = MessageLog(registry.table)
    sb.continuation = Continuation(
        sqs, url, registry, message_log, broadcaster, per_message=5, deadline_seconds=40,
        signer=JobSigner(KEY, clock=lambda: clock.now),
        ledger=JobLedger(registry.table),
    )  # fmt: skip
    for i in range(N):
        registry.register(f"c{i:04d}", f"u{i % 7}", int(clock.now * 1000), endpoint=STORED)
    return sb, sqs, url


def drain(sb: Switchboard, sqs: Any, url: str) -> int:
    """Run every job until the queue is empty, as the worker would; the number of jobs."""
    assert sb.continuation is not None
    jobs = 0
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        result = sb.continue_fan_out([(m["MessageId"], m["Body"]) for m in messages])
        assert result == {"batchItemFailures": []}
        for m in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        jobs += len(messages)
    return jobs


def test_broadcast_past_its_deadline_reaches_everyone_once(
    wired: tuple[Switchboard, Any, str], gateway: FakeGateway, capsys: pytest.CaptureFixture[str]
) -> None:
    sb, sqs, url = wired
    answer = sb.push("all", None, {"text": "hello all"}, sb.authorize_http(None))
    assert answer["continued"] > 0 and answer["failed"] == 0
    assert answer["delivered"] < N
    jobs = drain(sb, sqs, url)
    assert jobs > 1
    received = Counter({cid: len(frames) for cid, frames in gateway.sent.items()})
    assert set(received) == {f"c{i:04d}" for i in range(N)}
    assert set(received.values()) == {1}
    assert {f["seq"] for cid in received for f in gateway.frames(cid)} == {answer["seq"]}
    # The workers posted to the endpoints the registry holds, as the sender did.
    assert set(gateway.endpoints) == {STORED}
    # One EMF line per fan-out: the sender's and every job's.
    assert capsys.readouterr().out.count('"event":"fanout_metrics"') == jobs + 1


def test_a_job_survives_the_round_trip_and_junk_is_refused() -> None:
    # Module-level imports: the e2e suite re-imports chalicelib, and BadJob must be the class
    # Job.decode raises (imported here, it could be the new module's).
    from chalicelib.registry import QuerySpec, Target

    job = Job(
        "room:lobby", 42, "room", "cX",
        [Target("c1", None, "https://e/api"), Target("c2")],
        [QuerySpec("ROOM#lobby", None, "CONN#", {"PK": "ROOM#lobby", "SK": "CONN#x"})],
        hop=3, id="j1", exp=2_000_000_000,
    )  # fmt: skip
    # Compared through its encoding: the e2e suite re-imports chalicelib, so the registry's
    # dataclasses imported here may be other class objects than the ones Job.decode builds.
    decoded = Job.decode(job.encode())
    assert decoded.encode() == job.encode()
    assert [t.connection_id for t in decoded.targets] == ["c1", "c2"] and decoded.hop == 3
    assert "https://e/api" not in job.encode()  # a job never carries an endpoint
    assert all(t.endpoint is None for t in decoded.targets)
    # Version 3; a version 1 or 2 job (endpoints, or unsigned) is refused, as is junk.
    for junk in ("", "[]", '{"v":3}', '{"v":3,"stream":"a"}', '{"v":1}', '{"v":2}'):
        with pytest.raises(BadJob):
            Job.decode(junk)
    bad_index = job.encode().replace('"queries":[{', '"queries":[{"index":"Evil",')
    with pytest.raises(BadJob):
        Job.decode(bad_index)


def test_without_a_queue_the_rest_is_reported_failed(
    registry: Registry, gateway: FakeGateway, clock: Clock
) -> None:
    ticks = itertools.count()
    sb = make_switchboard(registry, gateway)
    sb.broadcaster = Broadcaster(
        gateway, batch_size=10, deadline_seconds=20,
        clock=lambda: float(next(ticks)),
    )  # fmt: skip
    for i in range(50):
        registry.register(f"c{i:04d}", "u", int(clock.now * 1000))
    answer = sb.push("all", None, {"text": "x"}, sb.authorize_http(None))
    assert answer["stoppedEarly"] is True and "continued" not in answer and answer["failed"] > 0
