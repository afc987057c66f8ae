"""Fixtures for end-to-end tests: a real LocalGateway on ephemeral ports, real sockets.

``gateway_factory`` and ``ws_connect`` come from the root conftest (shared with the reliability
and browser tests). Every e2e test gets the ``e2e`` marker.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from local_gateway import LocalGateway
from tests.e2e.helpers import E2E_DIR, ECHO_APP
from tests.gateways import GatewayFactory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def echo_gateway(gateway_factory: GatewayFactory) -> LocalGateway:
    """The echo fixture app with its table (see fixture_apps/echo/app.py)."""
    return gateway_factory(ECHO_APP, schema_path=str(ECHO_APP / "schema.json"))
