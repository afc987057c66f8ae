"""Abuse: what one non-admin user can make the service do (security issue #12).

The attacks of finding 2, replayed against the app on the local gateway with the stage's own
limits (.chalice/config.json): one user opens 150 connections; one connection floods a room
with 300 ``sendRoom`` frames of 8,000 characters as fast as it can. Figures: handshakes refused
by the connection cap, frames refused by the rate limit (docs/RELIABILITY.md, "Abuse").
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus

from tests.reliability.conftest import GENEROUS_LIMITS, Figures, StackFactory
from tests.reliability.scale import SCALE
from tests.wsclient import open_ws, recv_json, send

pytestmark = pytest.mark.timeout(SCALE.timeout)

HANDSHAKES = 150
FRAMES = 300
# The stage's own limits, over the suite's generous ones (conftest.GENEROUS_LIMITS).
STAGE_ENV = json.loads(
    (Path(__file__).parents[2] / ".chalice" / "config.json").read_text(encoding="utf-8")
)["environment_variables"]
LIMITS = {name: STAGE_ENV[name] for name in GENEROUS_LIMITS}


def test_one_user_cannot_open_more_than_ten_connections(
    switchboard_factory: StackFactory, figures: Figures
) -> None:
    sb = switchboard_factory(env=LIMITS)
    accepted = refused = 0
    with contextlib.ExitStack() as stack:
        for _ in range(HANDSHAKES):
            try:
                stack.enter_context(open_ws(sb.ws_url, "userId=u_flood"))
                accepted += 1
            except InvalidStatus as exc:
                assert exc.response.status_code == 429
                refused += 1
        assert len(sb.registry().connections) == 10  # the refused ones left nothing
    figures.record(
        "abuse: one user, 150 handshakes",
        clients=1,
        accepted=accepted,
        refused=refused,
        leaked=sb.wait_for_registry(lambda r: r.items == 0).items,
    )
    assert (accepted, refused) == (10, HANDSHAKES - 10)
    assert sb.handler_errors() == 0, sb.error_details()


def test_one_connection_cannot_flood_a_room(
    switchboard_factory: StackFactory, figures: Figures
) -> None:
    sb = switchboard_factory(env=LIMITS)
    with (
        open_ws(sb.ws_url, "userId=u_spam") as spammer,
        open_ws(sb.ws_url, "userId=u_read") as reader,
    ):
        for ws in (spammer, reader):
            assert send(ws, {"action": "join", "room": "lobby"})["joined"] is True
        started = time.monotonic()
        for n in range(FRAMES):
            frame = {"action": "sendRoom", "room": "lobby", "text": "x" * 8000, "ref": n}
            spammer.send(json.dumps(frame))
        # The reader's presence enter may arrive among the replies: it is not one.
        replies: list[dict[str, Any]] = []
        while len(replies) < FRAMES:
            frame = recv_json(spammer, timeout=30)
            if frame.get("type") != "presence":
                replies.append(frame)
        elapsed = time.monotonic() - started
        sent = sum(r["type"] == "ack" for r in replies)
        limited = sum(r.get("code") == "rate_limited" for r in replies)
        delivered = 0
        with contextlib.suppress(TimeoutError):
            while delivered < sent:
                delivered += recv_json(reader, timeout=5)["type"] == "message"
        assert send(spammer, {"action": "ping"}, timeout=10)["type"] in ("pong", "error")
    figures.record(
        "abuse: one connection, 300 x 8,000-char sendRoom",
        clients=2,
        messages=FRAMES,
        sent=sent,
        refused=limited,
        delivered=delivered,
        seconds=round(elapsed, 1),
    )
    assert sent + limited == FRAMES
    # The join took a token; the rest is the burst (20) and the refill (10/s) while it ran.
    assert sent <= 19 + 10 * elapsed + 1
    assert delivered == sent
    assert sb.handler_errors() == 0, sb.error_details()
