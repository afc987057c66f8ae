"""Idempotent sends on the real app: a send retried across a reconnect is delivered once."""

from __future__ import annotations

from typing import Any

import pytest

from local_gateway import LocalGateway
from tests.gateways import http
from tests.wsclient import quiet, recv_json, send

pytestmark = pytest.mark.timeout(60)


def test_a_send_retried_after_a_reconnect_is_delivered_once(
    gw: LocalGateway, ws_connect: Any
) -> None:
    bob = ws_connect(gw, "userId=u_bob")
    alice = ws_connect(gw, "userId=u_alice")
    dm = {"action": "sendMessage", "targetUserId": "u_bob", "text": "once", "clientMsgId": "c-1"}
    first = send(alice, {**dm, "ref": 1})
    assert first["type"] == "ack" and first["delivered"] == 1, first
    alice.close()  # the client never saw the ack: it reconnects and sends again
    alice = ws_connect(gw, "userId=u_alice")
    again = send(alice, {**dm, "ref": 1})
    assert again == {**first, "delivered": 0, "duplicate": True}, again
    received = recv_json(bob)
    assert received["id"] == first["id"] and "seq" not in first  # a DM's ack names no seq
    assert quiet(bob, 0.5)  # and nothing more

    body = {"text": "from the back end", "clientMsgId": "job-1"}
    pushes = [http(gw, "POST", "/users/u_bob/messages", body) for _ in range(2)]
    assert [status for status, _ in pushes] == [200, 200]
    assert pushes[1][1]["duplicate"] is True and pushes[1][1]["seq"] == pushes[0][1]["seq"]
    assert recv_json(bob)["text"] == "from the back end"
    assert quiet(bob, 0.5)
