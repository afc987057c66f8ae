"""Fixtures for end-to-end tests: a real LocalGateway on ephemeral ports, real sockets.

Reuse for any Chalice project:

    def test_something(gateway_factory, ws_connect):
        gw = gateway_factory(REPO_ROOT, auth_mode="none")      # started; stopped at teardown
        ws = ws_connect(gw, "userId=u_1")                     # websockets sync client
        ws.send(json.dumps({"action": "ping"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "pong"
        gw.invocations.wait_for("$disconnect", timeout=5)     # after ws.close()

Gateways are function-scoped on purpose: the root conftest's autouse ``aws_env`` fixture
resets AWS_* variables (it deletes AWS_ENDPOINT_URL_DYNAMODB) around every test, and the
gateway's environment must be applied after it. Every e2e test gets the ``e2e`` marker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from local_gateway import LocalGateway
from tests.e2e.helpers import E2E_DIR, ECHO_APP, started_gateways


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


GatewayFactory = Callable[..., LocalGateway]


@pytest.fixture
def gateway_factory() -> Iterator[GatewayFactory]:
    """``gateway_factory(project_dir, **LocalGateway options)`` -> a started gateway.

    Defaults for tests: ephemeral WebSocket and REST ports, short close timeout.
    """
    with started_gateways() as start:
        yield start


@pytest.fixture
def echo_gateway(gateway_factory: GatewayFactory) -> LocalGateway:
    """The echo fixture app with its table (see fixture_apps/echo/app.py)."""
    return gateway_factory(ECHO_APP, schema_path=str(ECHO_APP / "schema.json"))


WsConnect = Callable[..., ClientConnection]


@pytest.fixture
def ws_connect() -> Iterator[WsConnect]:
    """``ws_connect(gateway_or_url, query="", **websockets options)`` -> an open client.

    Pings are off by default so idle-timeout behaviour is deterministic.
    """
    stack = contextlib.ExitStack()

    def open_client(
        target: LocalGateway | str, query: str = "", **options: Any
    ) -> ClientConnection:
        if isinstance(target, LocalGateway):
            assert target.urls is not None
            url = target.urls.websocket
        else:
            url = target
        if query:
            url += "?" + query
        options.setdefault("open_timeout", 5)
        options.setdefault("close_timeout", 2)
        options.setdefault("ping_interval", None)
        client: ClientConnection = stack.enter_context(connect(url, **options))
        return client

    with stack:
        yield open_client
