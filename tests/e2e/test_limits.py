"""The abuse limits on the local gateway with real sockets (security issue #12, finding 2): the
stage's own settings from .chalice/config.json (10 connections per user, 10 frames/s with a
burst of 20)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from local_gateway import LocalGateway
from tests.wsclient import recv_json, send

pytestmark = pytest.mark.timeout(60)


def test_the_eleventh_connection_of_one_user_is_refused_with_429(
    gw: LocalGateway, ws_connect: Any
) -> None:
    sockets = [ws_connect(gw, "userId=u_flood") for _ in range(10)]
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(gw, "userId=u_flood")
    assert refused.value.response.status_code == 429
    assert b"too many connections for this user (limit 10)" in refused.value.response.body
    assert send(ws_connect(gw, "userId=u_other"), {"action": "ping"})["type"] == "pong"
    sockets[0].close()
    gw.invocations.wait_for("$disconnect", timeout=5)
    assert send(ws_connect(gw, "userId=u_flood"), {"action": "ping"})["type"] == "pong"


def test_a_burst_over_the_bucket_gets_rate_limited_and_the_socket_stays_open(
    gw: LocalGateway, ws_connect: Any
) -> None:
    ws = ws_connect(gw, "userId=u_burst")
    started = time.monotonic()
    for n in range(30):
        ws.send(f'{{"action": "whoami", "ref": {n}}}')
    replies = sorted((recv_json(ws) for _ in range(30)), key=lambda r: r["ref"])
    elapsed = time.monotonic() - started
    accepted = [r for r in replies if r["type"] == "identity"]
    refused = [r for r in replies if r.get("code") == "rate_limited"]
    assert len(accepted) + len(refused) == 30
    # The burst, and what the bucket refilled while the frames were handled (10/s).
    assert 20 <= len(accepted) <= 20 + 10 * elapsed + 1
    assert refused and all(0 < r["retryAfterMs"] <= 100 for r in refused), [
        r["retryAfterMs"] for r in refused
    ]
    time.sleep(max(r["retryAfterMs"] for r in refused) / 1000)  # what the server said to wait
    assert send(ws, {"action": "ping"})["type"] == "pong"  # still open
