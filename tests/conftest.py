"""Shared fixtures: fake AWS credentials, a moto DynamoDB table, a switchboard wired to fakes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.broadcaster import Broadcaster
from chalicelib.config import Settings
from chalicelib.message_log import MessageLog
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from deploy.create_table import create_table
from tests.helpers import SECRET, FakeGateway

TABLE = "test-connections"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the unit and functional tests may reach real AWS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB", raising=False)


class Clock:
    def __init__(self, now: float = 1_795_608_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ddb(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, TABLE)
        yield client


@pytest.fixture
def clock() -> Clock:
    import time

    return Clock(time.time())


@pytest.fixture
def registry(ddb: Any, clock: Clock) -> Registry:
    return Registry(ddb, TABLE, ttl_seconds=7500, all_shards=4, clock=clock)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


def make_switchboard(registry: Registry, gateway: FakeGateway, **settings: Any) -> Switchboard:
    base: dict[str, Any] = {"table_name": TABLE, "auth_mode": "none", "fanout_workers": 8}
    base.update(settings)
    if base["auth_mode"] == "jwt":
        base.setdefault("jwt_secret", SECRET)
    config = Settings(**base)
    broadcaster = Broadcaster(gateway, registry.remove, workers=config.fanout_workers)
    message_log = MessageLog(registry._ddb, TABLE, config.history_ttl_seconds)
    return Switchboard(config, registry, gateway, broadcaster, message_log)  # type: ignore[arg-type]


@pytest.fixture
def switchboard(registry: Registry, gateway: FakeGateway) -> Switchboard:
    return make_switchboard(registry, gateway)
