"""The continuation worker on each deploy path: a failed job is never dropped.

``chalice deploy`` (Chalice 1.34) subscribes the worker without FunctionResponseTypes, so the
mapping ignores a returned ``batchItemFailures`` and deletes the whole batch ("Handling errors
for an SQS event source in Lambda", Lambda developer guide): there the worker subscribes with
batch size 1 and raises, and SQS delivers the job again. The packaged stack turns partial
batch responses on (CONTINUATION_PARTIAL_BATCH=true) and only the failed jobs come back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.config import CONTINUATION_QUEUE_UNSET, continuation_queue_name
from chalicelib.errors import ContinuationBatchFailed
from chalicelib.registry import Registry
from tests.conftest import make_switchboard
from tests.helpers import FakeGateway


class FailingContinuation:
    """Fails the jobs whose body is "bad"."""

    def run_batch(
        self, records: list[tuple[str, str]], after: Callable[[Any], object] = lambda report: None
    ) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": m} for m, b in records if b == "bad"]}


def sqs_event(*bodies: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"m{i}",
                "receiptHandle": f"r{i}",
                "body": body,
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q",
                "awsRegion": "us-east-1",
            }
            for i, body in enumerate(bodies)
        ]
    }


@pytest.fixture
def worker(registry: Registry, gateway: FakeGateway) -> Iterator[Any]:
    def use(partial_batch: bool, continuation: Any = None) -> Any:
        switchboard = make_switchboard(registry, gateway, continuation_partial_batch=partial_batch)
        switchboard.continuation = continuation
        app_module.reset_switchboard(switchboard)
        return Client(app_module.app).lambda_

    yield use
    app_module.reset_switchboard(None)


def test_chalice_deploy_subscribes_one_job_per_batch_to_the_stages_queue() -> None:
    (source,) = [s for s in app_module.app.event_sources if s.name == "continue_fan_out"]
    assert source.batch_size == 1
    assert source.queue == continuation_queue_name()
    assert continuation_queue_name({"CONTINUATION_QUEUE_NAME": "sb-prod-q"}) == "sb-prod-q"
    # Unset (a plain `chalice deploy` without make chalice-deploy): a name no stage's queue has.
    assert continuation_queue_name({}) == CONTINUATION_QUEUE_UNSET


def test_a_failed_job_raises_without_partial_batch_responses(worker: Any) -> None:
    with pytest.raises(ContinuationBatchFailed):
        worker(False, FailingContinuation()).invoke("continue_fan_out", sqs_event("bad"))


def test_no_queue_configured_raises_too(worker: Any) -> None:
    with pytest.raises(ContinuationBatchFailed):
        worker(False, None).invoke("continue_fan_out", sqs_event("ok"))


def test_with_partial_batch_responses_only_the_failed_job_is_reported(worker: Any) -> None:
    result = worker(True, FailingContinuation()).invoke("continue_fan_out", sqs_event("ok", "bad"))
    assert result.payload == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


def test_a_batch_that_succeeded_returns_on_both_paths(worker: Any) -> None:
    for partial in (False, True):
        result = worker(partial, FailingContinuation()).invoke("continue_fan_out", sqs_event("ok"))
        assert result.payload == {"batchItemFailures": []}
