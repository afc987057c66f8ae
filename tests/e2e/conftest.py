"""Fixtures for end-to-end tests: a real LocalGateway on ephemeral ports, real sockets.

``gateway_factory`` and ``ws_connect`` come from the root conftest (shared with the reliability
and browser tests). Every e2e test gets the ``e2e`` marker.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from local_gateway import LocalGateway
from tests import wsclient
from tests.asyncapi import FrameChecker
from tests.e2e.helpers import E2E_DIR, ECHO_APP, REPO_ROOT
from tests.gateways import GatewayFactory


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def gw(gateway_factory: GatewayFactory) -> LocalGateway:
    """The switchboard app itself (the repo root), identity from ``?userId=``."""
    return gateway_factory(REPO_ROOT, auth_mode="none")


@pytest.fixture
def echo_gateway(gateway_factory: GatewayFactory) -> LocalGateway:
    """The echo fixture app with its table (see fixture_apps/echo/app.py)."""
    return gateway_factory(ECHO_APP, schema_path=str(ECHO_APP / "schema.json"))


@pytest.fixture(autouse=True)
def frames_match_the_protocol_document() -> Iterator[FrameChecker]:
    """Every JSON frame an e2e test receives through tests/wsclient.py must match its schema
    in docs/asyncapi.yaml (by ``type``; API Gateway's own error frame by its shape)."""
    checker = FrameChecker()
    wsclient.frame_check = checker
    try:
        yield checker
    finally:
        wsclient.frame_check = None
    assert not checker.failures, "frames not in docs/asyncapi.yaml:\n" + "\n".join(checker.failures)
