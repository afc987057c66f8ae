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

from chalicelib.config import EndpointRule, Settings
from chalicelib.message_log import MessageLog
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from chalicelib.table import DynamoDB
from chalicelib.wiring import assemble
from deploy.create_table import create_table
from local_gateway import LocalGateway
from tests.gateways import GatewayFactory, started_gateways
from tests.helpers import AUDIENCE, ISSUER, SECRET, FakeClock, FakeGateway
from tests.tiers import add_option, forbid_unmarked_sockets, mark_socket_tests
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


class Clock(FakeClock):
    """The suite's one fake clock (tests.helpers.FakeClock), starting at a whole epoch second."""

    def __init__(self, now: float = 1_795_608_000.0) -> None:
        super().__init__(now)


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
    message_log = MessageLog(registry.table, config.history_ttl_seconds)
    # Put together as the deployed one is (wiring.assemble), over moto and the fake gateway.
    return assemble(config, registry, gateway, message_log)  # type: ignore[arg-type]


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


__all__ = ["forbid_unmarked_sockets"]  # tests/tiers.py's autouse guard, registered here


def pytest_addoption(parser: pytest.Parser) -> None:
    add_option(parser)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that open sockets are marked ``socket`` (tests/tiers.py), before ``-m`` selects
    (this hook runs before pytest's own, which deselects by marker). ``soak`` tests
    outside tests/reliability (which skips its own by scale) run only with
    RELIABILITY_SCALE=soak (``make soak``): they take minutes and thousands of sockets."""
    import os

    mark_socket_tests(items)
    if os.environ.get("RELIABILITY_SCALE") == "soak":
        return
    skip = pytest.mark.skip(reason="soak only: make soak (RELIABILITY_SCALE=soak)")
    for item in items:
        if item.get_closest_marker("soak") and "reliability" not in item.nodeid.split("/"):
            item.add_marker(skip)
