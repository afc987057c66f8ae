"""Paths and small helpers shared by the e2e tests."""

from __future__ import annotations

from pathlib import Path

from websockets.sync.client import ClientConnection

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
