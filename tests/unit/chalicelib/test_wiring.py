"""build_switchboard: the real collaborators, configured from the settings."""

from __future__ import annotations

from typing import Any

import boto3

from chalicelib.config import Settings
from chalicelib.management_api import ManagementApi
from chalicelib.registry import Registry
from chalicelib.wiring import build_switchboard


def test_build_switchboard_sizes_the_clients_from_the_settings(aws_env: None) -> None:
    settings = Settings(
        table_name="t", auth_mode="none", fanout_workers=12, all_shards=3, http_read_timeout=4.0
    )
    session = boto3.session.Session()
    made: dict[str, Any] = {}
    real_client = session.client

    def client(name: str, **options: Any) -> Any:
        made[name] = real_client(name, **options)  # type: ignore[call-overload]
        return made[name]

    session.client = client  # type: ignore[method-assign]
    switchboard = build_switchboard(settings, session=session)
    assert switchboard.settings is settings
    assert isinstance(switchboard.registry, Registry)
    assert isinstance(switchboard.gateway, ManagementApi)
    config = made["dynamodb"].meta.config
    assert config.max_pool_connections == 12 and config.read_timeout == 4.0
    assert config.retries == {"mode": "standard"}
    management = switchboard.gateway.client("https://abc.execute-api.us-east-1.amazonaws.com/api")
    assert management.meta.config.max_pool_connections == 12


def test_build_switchboard_gives_the_broadcaster_the_fan_out_deadline(aws_env: None) -> None:
    settings = Settings(table_name="t", auth_mode="none", fanout_deadline_seconds=7.5)
    switchboard = build_switchboard(settings, session=boto3.session.Session())
    assert switchboard.broadcaster._deadline_seconds == 7.5


def test_build_switchboard_paces_the_transport_as_configured(aws_env: None) -> None:
    settings = Settings(
        table_name="t", auth_mode="none", fanout_initial_rate=300.0, fanout_max_rate=1200.0
    )
    transport = build_switchboard(settings, session=boto3.session.Session()).gateway
    rate = transport._async_transport().rate  # type: ignore[union-attr]
    assert rate is not None and (rate.rate, rate.max_rate) == (300.0, 1200.0)
    off = Settings(table_name="t", auth_mode="none", fanout_rate_control="off")
    gateway = build_switchboard(off, session=boto3.session.Session()).gateway
    assert gateway._async_transport().rate is None  # type: ignore[union-attr]


def test_a_queue_known_by_name_makes_its_sqs_client_and_url_when_first_used(
    aws_env: None,
) -> None:
    """``chalice deploy`` stages know the queue by name only (CONTINUATION_QUEUE_NAME): every
    function gets a continuation, but none makes an SQS client or looks the URL up until a
    fan-out hands off ($connect and $disconnect never do), and then only once."""
    settings = Settings(
        table_name="t",
        auth_mode="none",
        continuation_queue_name="sb-dev-q",
        continuation_key="k" * 32,
    )
    session = boto3.session.Session()
    made: list[str] = []
    looked_up: list[str] = []
    real_client = session.client

    class Sqs:
        def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803 - boto3's name
            looked_up.append(QueueName)
            return {"QueueUrl": f"https://sqs.us-east-1.amazonaws.com/123456789012/{QueueName}"}

    def client(name: str, **options: Any) -> Any:
        made.append(name)
        if name == "sqs":
            return Sqs()
        return real_client(name, **options)  # type: ignore[call-overload]

    session.client = client  # type: ignore[method-assign]
    continuation = build_switchboard(settings, session=session).continuation
    assert continuation is not None and "sqs" not in made
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/sb-dev-q"
    assert continuation._url() == continuation._url() == url
    assert made.count("sqs") == 1 and looked_up == ["sb-dev-q"]


def test_without_a_queue_there_is_no_continuation(aws_env: None) -> None:
    settings = Settings(table_name="t", auth_mode="none")
    assert build_switchboard(settings, session=boto3.session.Session()).continuation is None
