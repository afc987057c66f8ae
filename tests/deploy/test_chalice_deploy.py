"""``make chalice-deploy``: the stage's table and queues exist, correctly, before ``chalice
deploy`` runs, and Chalice subscribes the worker to this stage's queue (moto, no AWS)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from deploy import chalice_deploy
from deploy.project import stage, stages


@pytest.fixture
def session(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.session.Session(region_name="us-east-1")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def __call__(self, command: list[str], env: dict[str, str]) -> int:
        self.calls.append((command, env))
        return 0


def attributes(sqs: Any, name: str) -> dict[str, str]:
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("stage_name", stages())
def test_creates_the_stages_queue_before_chalice_deploy(session: Any, stage_name: str) -> None:
    run = Recorder()
    assert (
        chalice_deploy.main(["--stage", stage_name], session=session, run=run, python=(3, 13)) == 0
    )
    s = stage(stage_name)
    sqs = session.client("sqs")
    queue = attributes(sqs, s.continuation_queue)
    # Lambda refuses a mapping whose queue's visibility timeout is under the function's; AWS
    # recommends six times it ("Configuring a queue to use with Lambda").
    timeout = chalice_deploy.worker_timeout(stage_name)
    assert int(queue["VisibilityTimeout"]) == 6 * timeout >= 360
    redrive = json.loads(queue["RedrivePolicy"])
    dlq = attributes(sqs, f"{s.continuation_queue}-dlq")
    assert redrive == {"deadLetterTargetArn": dlq["QueueArn"], "maxReceiveCount": 5}
    assert int(dlq["MessageRetentionPeriod"]) == 14 * 86400
    session.client("dynamodb").describe_table(TableName=s.table_name)
    ((command, env),) = run.calls
    assert command[-3:] == ["deploy", "--stage", stage_name]
    # app.py's on_sqs_message reads it when Chalice imports the app: this stage's queue.
    assert env["CONTINUATION_QUEUE_NAME"] == s.continuation_queue


def test_running_again_fixes_an_existing_queue(session: Any) -> None:
    s = stage("dev")
    sqs = session.client("sqs")
    sqs.create_queue(QueueName=s.continuation_queue)  # the default 30 s: Lambda refuses it
    assert chalice_deploy.main(["--stage", "dev", "--only-resources"], session=session) == 0
    assert int(attributes(sqs, s.continuation_queue)["VisibilityTimeout"]) == 360


def test_refuses_a_python_lambda_cannot_run(
    session: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Recorder()
    assert chalice_deploy.main(["--stage", "dev"], session=session, run=run, python=(3, 11)) == 2
    assert run.calls == [] and "Python 3.12 or 3.13" in capsys.readouterr().err
