"""Shared fixtures: fake AWS credentials, a moto DynamoDB table, a switchboard wired to fakes;
for the suites on a real LocalGateway, started gateways and WebSocket clients.

    def test_something(gateway_factory, ws_connect):
        gw = gateway_factory(REPO_ROOT, auth_mode="off")      # started; stopped at teardown
        ws = ws_connect(gw, "userId=u_1")                     # websockets sync client
        ws.send(json.dumps({"action": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
        gw.invocations.wait_for("$disconnect", timeout=5)     # after ws.close()

Gateways are function-scoped on purpose: the autouse ``aws_env`` fixture resets AWS_* variables
(it deletes AWS_ENDPOINT_URL_DYNAMODB) around every test, and the gateway's environment must be
applied after it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from websockets.sync.client import ClientConnection

from chalicelib.broadcaster import Broadcaster
from chalicelib.config import EndpointRule, Settings
from chalicelib.message_log import MessageLog
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from chalicelib.table import DynamoDB
from deploy.create_table import create_table
from local_gateway import LocalGateway
from tests.gateways import GatewayFactory, started_gateways
from tests.helpers import AUDIENCE, ISSUER, SECRET, FakeGateway
from tests.wsclient import WsConnect, open_ws

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
    """The one injected clock of a test (epoch seconds), exact to the microsecond.

    It keeps whole microseconds and rounds every value it is set to: a float of epoch seconds
    has about 0.24 µs of resolution, so ``clock.now += 0.1`` done on a bare float drifts (30
    steps can be microseconds off) and a rate limit counting in microseconds saw a frame
    arrive just before its token was back (the flaky ``test_a_burst_over_the_bucket...``)."""

    def __init__(self, now: float = 1_795_608_000.0) -> None:
        self._micros = round(now * 1_000_000)

    @property
    def now(self) -> float:
        return self._micros / 1_000_000

    @now.setter
    def now(self, value: float) -> None:
        self._micros = round(value * 1_000_000)

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
def table(ddb: Any, clock: Clock) -> DynamoDB:
    """The table layer over moto, on the test's clock (every service reads time from it)."""
    return DynamoDB(ddb, TABLE, clock=clock)


@pytest.fixture
def registry(table: DynamoDB) -> Registry:
    return Registry(table, ttl_seconds=7500, all_shards=4)


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


def make_switchboard(registry: Registry, gateway: FakeGateway, **settings: Any) -> Switchboard:
    base: dict[str, Any] = {"table_name": TABLE, "auth_mode": "none", "fanout_workers": 8}
    base.update(settings)
    if base["auth_mode"] == "jwt":
        base.setdefault("jwt_secret", SECRET)
        base.setdefault("jwt_issuer", ISSUER)
        base.setdefault("jwt_audience", AUDIENCE)
    base.setdefault("endpoint_rule", EndpointRule.from_env())  # AWS_REGION from aws_env
    config = Settings(**base)
    broadcaster = Broadcaster(gateway, deadline_seconds=config.fanout_deadline_seconds)
    message_log = MessageLog(registry.table, config.history_ttl_seconds)
    return Switchboard(config, registry, gateway, broadcaster, message_log)  # type: ignore[arg-type]


@pytest.fixture
def switchboard(registry: Registry, gateway: FakeGateway) -> Switchboard:
    return make_switchboard(registry, gateway)


@pytest.fixture
def gateway_factory() -> Iterator[GatewayFactory]:
    """``gateway_factory(project_dir, **LocalGateway options)`` -> a started gateway, stopped
    at teardown. Defaults for tests: ephemeral WebSocket and REST ports, short close timeout.
    """
    with started_gateways() as start:
        yield start


@pytest.fixture
def ws_connect() -> Iterator[WsConnect]:
    """``ws_connect(gateway_or_url, query="", **websockets options)`` -> an open client, closed
    at teardown (``tests.wsclient.open_ws`` defaults: pings off, no proxy)."""
    with contextlib.ExitStack() as stack:

        def open_client(
            target: LocalGateway | str, query: str = "", **options: Any
        ) -> ClientConnection:
            client: ClientConnection = stack.enter_context(open_ws(target, query, **options))
            return client

        yield open_client


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``soak`` tests outside tests/reliability (which skips its own by scale) run only with
    RELIABILITY_SCALE=soak (``make soak``): they take minutes and thousands of sockets."""
    import os

    if os.environ.get("RELIABILITY_SCALE") == "soak":
        return
    skip = pytest.mark.skip(reason="soak only: make soak (RELIABILITY_SCALE=soak)")
    for item in items:
        if item.get_closest_marker("soak") and "reliability" not in item.nodeid.split("/"):
            item.add_marker(skip)
