"""The test tiers: which tests open sockets, and a guard that keeps the others honest.

``make check`` runs every test not marked ``socket`` (lint aside, nothing that listens or
connects on 127.0.0.1 and no browser), with ``--forbid-sockets``: a test of that tier that
opens an IP socket fails, so a socket test cannot hide in the fast tier by a missing mark.

A test is a ``socket`` test when it is marked so (``pytestmark = pytest.mark.socket``), when it
is an ``e2e`` or ``browser`` test (marked by tests/e2e and tests/reliability's conftests and the
browser modules), or when it uses the fixtures that start a gateway or open a WebSocket.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Fixtures that start a LocalGateway on ephemeral ports or connect to one.
SOCKET_FIXTURES = frozenset({"gateway_factory", "ws_connect"})
IMPLYING_SOCKETS = ("e2e", "browser")
# Suites whose every test runs on the local gateway or a browser: marked by their path, so the
# marking does not depend on the order in which conftests' hooks run.
SOCKET_SUITES = frozenset({"e2e", "browser", "reliability"})
TESTS_DIR = Path(__file__).resolve().parent


def add_option(parser: pytest.Parser) -> None:
    parser.addoption(
        "--forbid-sockets",
        action="store_true",
        help="fail any test not marked socket/e2e/browser that opens an IP socket (make check)",
    )


def mark_socket_tests(items: list[pytest.Item]) -> None:
    """Mark ``socket`` every test that needs one, so ``-m "not socket"`` is the fast tier.

    The deploy tests share one xdist group: they package each stage once per process
    (tests/deploy/conftest.py), and under ``--dist loadgroup`` that stays once per run."""
    for item in items:
        path = Path(str(item.path)).resolve()
        suite = path.relative_to(TESTS_DIR).parts[0] if TESTS_DIR in path.parents else ""
        if suite == "deploy":
            item.add_marker(pytest.mark.xdist_group("deploy"))
        if item.get_closest_marker("socket"):
            continue
        uses_fixture = bool(SOCKET_FIXTURES & set(getattr(item, "fixturenames", ())))
        if (
            uses_fixture
            or suite in SOCKET_SUITES
            or any(item.get_closest_marker(m) for m in IMPLYING_SOCKETS)
        ):
            item.add_marker(pytest.mark.socket)


class SocketForbidden(Exception):
    """An IP socket opened by a test of the no-socket tier (not an OSError, so no retry loop
    takes it for a network error and hides it)."""


def _guarded(original: Callable[..., Any], attempts: list[str], verb: str) -> Callable[..., Any]:
    def checked(self: socket.socket, address: Any, *args: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(f"{verb} {address!r}")
            raise SocketForbidden(f"{verb} {address!r}: mark the test pytest.mark.socket")
        return original(self, address, *args)

    return checked


@pytest.fixture(autouse=True)
def forbid_unmarked_sockets(request: pytest.FixtureRequest) -> Iterator[None]:
    """Under ``--forbid-sockets``, no IP socket for a test that is not marked ``socket``; the
    test fails even if the code under test swallowed the error."""
    if not request.config.getoption("forbid_sockets") or request.node.get_closest_marker("socket"):
        yield
        return
    attempts: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        for verb in ("connect", "connect_ex", "bind"):
            patch.setattr(
                socket.socket, verb, _guarded(getattr(socket.socket, verb), attempts, verb)
            )
        yield
    if attempts:
        pytest.fail(f"opened IP sockets without pytest.mark.socket: {attempts}", pytrace=False)
