"""The functional harness: the Chalice app's Lambdas driven as API Gateway would, in process.

``harness_over(switchboard, gateway)`` installs a switchboard (moto-backed in the functional
tier) behind ``app.py`` and yields a ``Harness``; ``tests/functional/conftest.py`` builds the
``harness`` and ``jwt_harness`` fixtures from it. Frames the app posts land in the
``FakeGateway``, where the harness reads the replies.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

from chalice.test import Client

import app as app_module
from chalicelib.service import Switchboard
from tests.helpers import FakeGateway, connect_event, disconnect_event, message_event


class Harness:
    """Drives the three websocket Lambdas and the HTTP routes like API Gateway would."""

    def __init__(self, client: Client, gateway: FakeGateway) -> None:
        self.client = client
        self.gateway = gateway

    def connect(self, cid: str, **query: str) -> dict[str, Any]:
        return self.client.lambda_.invoke("connect", connect_event(cid, query or None)).payload

    def send(self, cid: str, frame: Any) -> dict[str, Any]:
        """Send a frame and return the reply the sender got (the last frame posted to it)."""
        before = len(self.replies(cid))
        self.client.lambda_.invoke("message", message_event(cid, frame))
        frames = self.replies(cid)
        assert len(frames) == before + 1, (
            f"expected exactly one reply to {cid}, got {frames[before:]}"
        )
        return frames[-1]

    def send_raw(self, cid: str, frame: Any) -> list[dict[str, Any]]:
        """Every frame posted to ``cid`` while it sends ``frame`` (presence events included)."""
        before = len(self.gateway.frames(cid))
        self.client.lambda_.invoke("message", message_event(cid, frame))
        return self.gateway.frames(cid)[before:]

    def replies(self, cid: str) -> list[dict[str, Any]]:
        """Frames posted to ``cid`` but presence events (which come from others' joins)."""
        return [f for f in self.gateway.frames(cid) if f["type"] != "presence"]

    def presence(self, cid: str) -> list[tuple[str, str, str]]:
        """(room, event, userId) of the presence events ``cid`` got, in order."""
        return [
            (f["room"], f["event"], f["userId"])
            for f in self.gateway.frames(cid)
            if f["type"] == "presence"
        ]

    def disconnect(self, cid: str) -> dict[str, Any]:
        return self.client.lambda_.invoke("disconnect", disconnect_event(cid)).payload

    def inbox(self, cid: str) -> list[dict[str, Any]]:
        return [f for f in self.gateway.frames(cid) if f["type"] == "message"]

    def post(self, path: str, body: Any, auth: str | None = None) -> Any:
        """POST ``body`` (JSON unless a str) to an HTTP route; the chalice test response."""
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        raw = body if isinstance(body, str) else json.dumps(body)
        return self.client.http.post(path, headers=headers, body=raw)


@contextlib.contextmanager
def harness_over(switchboard: Switchboard, gateway: FakeGateway) -> Iterator[Harness]:
    """A harness over ``switchboard``; app.py's switchboard is reset afterwards."""
    app_module.reset_switchboard(switchboard)
    try:
        with Client(app_module.app) as client:
            yield Harness(client, gateway)
    finally:
        app_module.reset_switchboard(None)
