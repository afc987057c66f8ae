"""Paths and small helpers shared by the e2e tests."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection

from local_gateway import Limits, LocalGateway

E2E_DIR = Path(__file__).resolve().parent
REPO_ROOT = E2E_DIR.parents[1]
FIXTURE_APPS = E2E_DIR / "fixture_apps"
ECHO_APP = FIXTURE_APPS / "echo"
BARE_APP = FIXTURE_APPS / "bare"

# 11 random bytes in URL-safe base64, like API Gateway's ids (e.g. ``VNRXVFJOywMF3-Q=``).
AWS_ID_PATTERN = r"^[A-Za-z0-9_-]{15}=$"


def connection_id(ws: ClientConnection) -> str:
    """Ask the echo fixture app for this socket's connectionId."""
    ws.send("whoami")
    reply = ws.recv(timeout=5)
    assert isinstance(reply, str)
    return reply


def recv_json(ws: ClientConnection, timeout: float = 5) -> Any:
    return json.loads(ws.recv(timeout=timeout))


@contextlib.contextmanager
def started_gateways() -> Iterator[Callable[..., LocalGateway]]:
    """Yield ``start(project_dir, **LocalGateway options)``; every gateway it started is stopped
    (newest first) on exit. Test defaults: ephemeral WebSocket and REST ports, short close
    timeout."""
    started: list[LocalGateway] = []

    def start(project_dir: str | Path, **options: Any) -> LocalGateway:
        options.setdefault("ws_port", 0)
        options.setdefault("rest_port", 0)
        options.setdefault("close_timeout", 1.0)
        gateway = LocalGateway(str(project_dir), limits=Limits.pop_from(options), **options)
        gateway.start()
        started.append(gateway)
        return gateway

    try:
        yield start
    finally:
        for gateway in reversed(started):
            gateway.stop()
