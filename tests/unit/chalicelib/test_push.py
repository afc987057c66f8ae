"""The push notifier on moto's SNS and the in-memory table; the rule of deploy/event_rules.json
on moto's EventBridge: what docs/PUSH.md says can be tested without AWS."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns import sns_backends

from chalicelib.bus import Events, Publisher
from chalicelib.devices import Devices
from chalicelib.message import Message
from chalicelib.protocol import Scope
from chalicelib.push import PushFailed, PushNotifier, notification
from tests.conftest import Clock
from tests.memtable import MemoryTable
from tests.unit.chalicelib.memory import START

RULES = json.loads((Path(__file__).parents[3] / "deploy" / "event_rules.json").read_text())
APNS = "ab" * 32


def undelivered(to: str = "u_b", preview: str = "see you at 6") -> dict[str, Any]:
    """A "Message Undelivered" event as EventBridge hands it to a Lambda target."""
    return {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "source": "switchboard",
        "detail-type": "Message Undelivered",
        "account": "123456789012",
        "time": "2026-12-06T08:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventId": "undelivered:user:u_b:7",
            "messageId": "m1",
            "stream": f"user:{to}",
            "seq": 7,
            "from": "u_a",
            "to": to,
            "event": "message",
            "reason": "no_connections",
            "preview": preview,
            "previewTruncated": False,
            "sentAt": 1,
        },
    }


@pytest.fixture
def sns(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("sns", region_name="us-east-1")


@pytest.fixture
def devices() -> Devices:
    return Devices(MemoryTable(Clock(START)), ttl_seconds=86400)


def application(sns: Any, platform: str) -> str:
    arn: str = sns.create_platform_application(Name="app", Platform=platform, Attributes={})[
        "PlatformApplicationArn"
    ]
    return arn


def sent(sns_arn: str) -> list[dict[str, Any]]:
    """What moto's SNS published to the endpoints of one platform application."""
    backend = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
    return [
        json.loads(message)
        for endpoint in backend.platform_endpoints.values()
        if endpoint.application.arn == sns_arn
        for message in endpoint.messages.values()
    ]


def test_an_undelivered_message_reaches_every_device_of_its_recipient(
    sns: Any, devices: Devices
) -> None:
    apns, fcm = application(sns, "APNS"), application(sns, "GCM")
    devices.register("u_b", "apns", APNS)
    devices.register("u_b", "fcm", "fcm-token-1")
    devices.register("u_c", "fcm", "someone-else")
    notifier = PushNotifier(devices, sns, {"apns": apns, "fcm": fcm})
    result = notifier.handle(undelivered())
    assert result.as_dict() == {"devices": 2, "sent": 2, "disabled": 0, "skipped": 0, "failed": 0}
    [to_phone] = sent(apns)
    aps = json.loads(to_phone["APNS"])
    assert aps["aps"]["alert"] == {"title": "u_a", "body": "see you at 6"}
    assert (aps["stream"], aps["seq"]) == ("user:u_b", 7)
    [to_android] = sent(fcm)
    fcm_payload = json.loads(to_android["GCM"])
    assert fcm_payload["notification"]["body"] == "see you at 6"
    assert fcm_payload["data"] == {"stream": "user:u_b", "seq": "7", "event": "message"}


def test_a_token_sns_reports_disabled_is_forgotten(sns: Any, devices: Devices) -> None:
    fcm = application(sns, "GCM")
    devices.register("u_b", "fcm", "dead-token")
    endpoint = sns.create_platform_endpoint(PlatformApplicationArn=fcm, Token="dead-token")
    sns.set_endpoint_attributes(
        EndpointArn=endpoint["EndpointArn"], Attributes={"Enabled": "false"}
    )
    result = PushNotifier(devices, sns, {"fcm": fcm}).handle(undelivered())
    assert (result.disabled, result.sent) == (1, 0)
    assert devices.for_user("u_b") == []


def test_a_platform_without_an_application_is_skipped_and_other_events_ignored(
    sns: Any, devices: Devices
) -> None:
    devices.register("u_b", "apns_sandbox", APNS)
    notifier = PushNotifier(devices, sns, {})
    assert notifier.handle(undelivered()).skipped == 1
    other = {**undelivered(), "detail-type": "Connection Opened"}
    assert notifier.handle(other).devices == 0


def test_sns_failing_every_send_raises_for_lambdas_retries(devices: Devices) -> None:
    class Broken:
        def create_platform_endpoint(self, **kwargs: Any) -> dict[str, Any]:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "InternalError", "Message": "x"}}, "Create")

    devices.register("u_b", "fcm", "t")
    with pytest.raises(PushFailed):
        PushNotifier(devices, Broken(), {"fcm": "arn:app"}).handle(undelivered())


def test_the_notification_is_bounded_whatever_the_preview() -> None:
    message = json.loads(notification(undelivered(preview="x" * 5000)["detail"], "apns"))
    assert len(json.loads(message["APNS"])["aps"]["alert"]["body"]) == 178
    assert message["default"] == "x" * 178


def test_the_documented_rule_routes_undelivered_messages_only(aws_env: None) -> None:
    """deploy/event_rules.json's pattern on moto's EventBridge, fed by our own publisher."""
    [rule] = RULES["rules"]
    with mock_aws():
        events = boto3.client("events", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        events.create_event_bus(Name="sb")
        queue = sqs.create_queue(QueueName="target")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        events.put_rule(
            Name=rule["name"], EventBusName="sb", EventPattern=json.dumps(rule["pattern"])
        )
        events.put_targets(
            Rule=rule["name"],
            EventBusName="sb",
            Targets=[{"Id": "t", "Arn": arn["Attributes"]["QueueArn"]}],
        )
        bus = Events(Publisher(events, "sb", metrics_out=io.StringIO()))
        bus.connection_opened("c", "u_b", 1)
        message = Message.new("u_a", Scope.USER, "hello").logged("user:u_b", 3)
        bus.undelivered(message, "u_b", "no_connections")
        assert bus.flush() is not None
        received = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    [routed] = [json.loads(m["Body"]) for m in received]
    assert routed["detail-type"] == "Message Undelivered" and routed["source"] == "switchboard"
    assert routed["detail"]["eventId"] == "undelivered:user:u_b:3"
