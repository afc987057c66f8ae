"""``make run``'s continuation queue: the embedded SQS queue of app.py's worker, wired as
deployed (a dead-letter queue after ``maxReceiveCount`` receives), its URL in the app's
CONTINUATION_QUEUE_URL, so the local stack exercises continuation as the deployed one does."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from deploy.project import stage
from local_gateway import LocalGateway
from local_gateway.sqs import ROUTE_PREFIX
from tests.e2e.helpers import REPO_ROOT
from tests.gateways import GatewayFactory, wait_until

QUEUE = stage("dev").continuation_queue


def sqs_client(gw: LocalGateway) -> Any:
    assert gw.urls is not None
    return boto3.client(
        "sqs", endpoint_url=gw.urls.dynamodb, region_name=gw.region, **gw.credentials.boto3_kwargs()
    )


@pytest.mark.timeout(60)
def test_the_app_gets_the_queue_url_and_the_queue_has_a_dead_letter_queue(
    gateway_factory: GatewayFactory,
) -> None:
    gw = gateway_factory(
        REPO_ROOT, auth_mode="none", queue_url_env="CONTINUATION_QUEUE_URL", rest_port=None
    )
    url = gw.environment["CONTINUATION_QUEUE_URL"]
    assert url.rsplit("/", 1)[1] == QUEUE  # the stage's own queue, as chalice deploy names it
    sqs = sqs_client(gw)
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    dlq_url = sqs.get_queue_url(QueueName=f"{QUEUE}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 5,
    }


@pytest.mark.timeout(60)
def test_a_job_that_keeps_failing_ends_on_the_dead_letter_queue(
    gateway_factory: GatewayFactory,
) -> None:
    # Visibility 0: a failed job is visible again at once, so the receives take a moment. A
    # setting out of range makes every invocation of the worker fail (ConfigError), whatever
    # the job: what a worker that keeps crashing looks like to SQS.
    gw = gateway_factory(
        REPO_ROOT,
        auth_mode="none",
        env={"CONTINUATION_BATCH": "0"},
        queue_url_env="CONTINUATION_QUEUE_URL",
        queue_visibility_timeout=0,
        queue_max_receives=2,
        rest_port=None,
    )
    sqs = sqs_client(gw)
    sqs.send_message(QueueUrl=gw.environment["CONTINUATION_QUEUE_URL"], MessageBody="a job")
    dlq_url = sqs.get_queue_url(QueueName=f"{QUEUE}-dlq")["QueueUrl"]
    moved: list[dict[str, Any]] = []

    def in_dlq() -> bool:
        moved.extend(sqs.receive_message(QueueUrl=dlq_url).get("Messages", []))
        return bool(moved)

    wait_until(in_dlq, timeout=30)
    assert moved[0]["Body"] == "a job"
    runs = gw.invocations.find(ROUTE_PREFIX + QUEUE)
    # The worker failed each time, so SQS delivered the job again until the redrive policy
    # moved it, after maxReceiveCount receives.
    assert len(runs) == 2 and all(r.error for r in runs)
