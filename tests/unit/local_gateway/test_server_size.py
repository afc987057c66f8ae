"""local_gateway/server.py stays one responsibility: the WebSocket and @connections port, at
most 450 lines (issue #21); the port's guards, refusals and pages live in their own modules."""

from __future__ import annotations

from pathlib import Path

SERVER = Path(__file__).parents[3] / "local_gateway" / "server.py"


def test_server_is_at_most_450_lines() -> None:
    lines = len(SERVER.read_text(encoding="utf-8").splitlines())
    assert lines <= 450, f"local_gateway/server.py has {lines} lines; split it by responsibility"
