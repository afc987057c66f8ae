"""Continuation jobs cannot be forged, aimed, stretched or replayed (issue #22, item 5).

Anyone who can send to the queue used to make the worker resend any logged message to any
connection, or POST it to any URL signed with the function's credentials; a replayed job was
delivered twice. moto's DynamoDB through the table layer (registry, log, job ledger), on the
test's clock; jobs go straight to ``run_batch`` as the SQS event source would hand them over.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from chalicelib import protocol
from chalicelib.broadcaster import Broadcaster
from chalicelib.config import Settings
from chalicelib.continuation import Continuation, Job
from chalicelib.continuation_guard import JobLedger, JobSigner, derive_key, job_key
from chalicelib.message_log import MessageLog
from chalicelib.registry import Registry, Target
from tests.conftest import Clock
from tests.helpers import SECRET, FakeGateway

KEY = b"continuation-key-for-the-tests-32b"
STORED = "https://abc123.execute-api.us-east-1.amazonaws.com/api"
ATTACKER = "http://127.0.0.1:9/steal"


class Stack:
    def __init__(self, registry: Registry, gateway: FakeGateway, clock: Clock) -> None:
        self.clock = clock
        self.gateway = gateway
        self.log = MessageLog(registry.table)
        self.signer = JobSigner(KEY, ttl_seconds=900, clock=clock)
        self.ledger = JobLedger(registry.table)  # the table's clock: the test's
        broadcaster = Broadcaster(gateway, deadline_seconds=30)
        self.continuation = Continuation(
            None, "unused", registry, self.log, broadcaster, signer=self.signer, ledger=self.ledger
        )
        for cid, user in (("bob-1", "bob"), ("bob-2", "bob"), ("eve", "eve")):
            registry.register(cid, user, int(clock.now * 1000), endpoint=STORED)
        # alice's direct message to bob, logged: what a forged job would leak to eve.
        self.dm = self.log.append("user:bob", protocol.message_frame("alice", "user", "secret"))

    def job(self, targets: list[str], **changes: Any) -> Job:
        fields: dict[str, Any] = {
            "stream": "user:bob",
            "seq": self.dm["seq"],
            "scope": "user",
            "targets": [Target(cid) for cid in targets],
            "id": "job-1",
            "exp": self.signer.expiry(),
            **changes,
        }
        return Job(**fields)

    def run(self, *bodies: str) -> list[str]:
        """The message ids reported in batchItemFailures."""
        records = [(f"m{i}", body) for i, body in enumerate(bodies)]
        result = self.continuation.run_batch(records)
        return [item["itemIdentifier"] for item in result["batchItemFailures"]]


@pytest.fixture
def stack(registry: Registry, gateway: FakeGateway, clock: Clock) -> Stack:
    return Stack(registry, gateway, clock)


def test_a_signed_job_is_delivered_once_to_the_stored_endpoint(stack: Stack) -> None:
    assert stack.run(stack.signer.sign(stack.job(["bob-1", "bob-2"]).encode())) == []
    assert [f["text"] for f in stack.gateway.frames("bob-1")] == ["secret"]
    assert stack.gateway.endpoints == [STORED, STORED]


@pytest.mark.parametrize("flaw", ["other key", "unsigned", "tampered", "no mac", "junk"])
def test_a_forged_job_is_not_delivered_and_goes_towards_the_dlq(
    stack: Stack, flaw: str, caplog: pytest.LogCaptureFixture
) -> None:
    honest = stack.job(["bob-1"]).encode()
    bodies = {
        "other key": JobSigner(b"x" * 32).sign(stack.job(["eve"]).encode()),
        "unsigned": stack.job(["eve"]).encode(),
        # A valid signature over bob's job, the payload changed to name eve.
        "tampered": stack.signer.sign(honest).replace('"bob-1"', '"eve"'),
        "no mac": "." + stack.job(["eve"]).encode(),
        "junk": "x" * 64 + ".{}",
    }
    with caplog.at_level(logging.ERROR, logger="switchboard"):
        failed = stack.run(bodies[flaw])
    # Reported failed: SQS redelivers it until maxReceiveCount, then its redrive policy moves
    # it to the dead-letter queue; never delivered on any receive.
    assert failed == ["m0"]
    assert stack.gateway.sent == {}
    assert "continuation_refused_job" in caplog.text


def test_an_endpoint_in_a_job_is_ignored(stack: Stack) -> None:
    # A job this stage signed, with an endpoint list as version 1 carried: the worker posts
    # to the endpoint each connection registered with, never to one a job names.
    payload = json.loads(stack.job(["bob-1", "ghost"]).encode())
    payload["endpoints"] = [ATTACKER]
    assert stack.run(stack.signer.sign(json.dumps(payload))) == []
    assert stack.gateway.endpoints == [STORED]
    # "ghost" is no registered connection: nothing is posted for it, anywhere.
    assert set(stack.gateway.sent) == {"bob-1"}


def test_a_version_1_job_with_endpoints_is_refused(stack: Stack) -> None:
    v1 = {
        "v": 1, "stream": "user:bob", "seq": stack.dm["seq"], "scope": "user", "exclude": None,
        "hop": 1, "endpoints": [ATTACKER], "targets": [["eve", 0]], "queries": [],
    }  # fmt: skip
    assert stack.run(stack.signer.sign(json.dumps(v1))) == ["m0"]
    assert stack.gateway.endpoints == []


def test_an_expired_job_is_refused(stack: Stack) -> None:
    body = stack.signer.sign(stack.job(["bob-1"]).encode())
    stack.clock.now += 901
    assert stack.run(body) == ["m0"]
    assert stack.gateway.sent == {}


def test_a_replayed_job_is_delivered_once(stack: Stack) -> None:
    body = stack.signer.sign(stack.job(["bob-1"]).encode())
    assert stack.run(body) == []
    # SQS's at-least-once, or someone who read it off the queue, sends it again.
    assert stack.run(body) == []
    assert stack.run(body, body) == []
    assert len(stack.gateway.frames("bob-1")) == 1


def test_a_job_another_worker_runs_comes_back_later(stack: Stack) -> None:
    job = stack.job(["bob-1"])
    assert stack.ledger.claim(job.id, job.exp) == JobLedger.CLAIMED  # that other worker
    body = stack.signer.sign(job.encode())
    assert stack.run(body) == ["m0"]  # not dropped: redelivered after the visibility timeout
    assert stack.gateway.sent == {}
    stack.clock.now += 121  # that worker died: its claim is stale, this delivery takes over
    assert stack.run(body) == []
    assert len(stack.gateway.frames("bob-1")) == 1


def test_a_job_that_fails_midway_runs_again(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    body = stack.signer.sign(stack.job(["bob-1"]).encode())
    with monkeypatch.context() as patch:
        patch.setattr(stack.log, "get", lambda *a: (_ for _ in ()).throw(RuntimeError("down")))
        assert stack.run(body) == ["m0"]
    assert stack.run(body) == []  # the claim was released: the redelivery sends
    assert len(stack.gateway.frames("bob-1")) == 1


def test_the_job_key_comes_from_the_setting_or_the_jwt_secret() -> None:
    jwt = Settings(table_name="t", auth_mode="jwt", jwt_secret=SECRET)
    assert job_key(jwt) == derive_key(SECRET) != SECRET.encode()
    assert job_key(Settings(table_name="t", auth_mode="none", continuation_key="k" * 32)) == (
        b"k" * 32
    )
    assert job_key(Settings(table_name="t", auth_mode="none")) is None
    with pytest.raises(ValueError, match="32 bytes"):
        JobSigner(b"short")
