"""What a join costs under each kind of namespace: DynamoDB calls (and the items a transaction
writes), and authorizer calls, recorded from botocore as the app's handlers make them.

docs/PROTOCOL.md ("Permissions", "What a join costs") lists these numbers; this test keeps
them true. Write capacity follows from them (on-demand: 1 WCU per write of an item up to 1 KB,
2 per item of a transaction): see the docs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import botocore.client
import pytest
from chalice.test import Client

import app as app_module
from chalicelib.authorizer import Authorizer
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from tests.conftest import make_switchboard
from tests.functional.test_permissions import FULL, FakeLambda, Harness
from tests.helpers import FakeGateway


class Calls:
    """DynamoDB operations (a transaction counted with its items) while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.ops: Counter[str] = Counter()

    def record(self, operation: str, params: dict[str, Any]) -> None:
        if not self.on:
            return
        names = set(params.get("ExpressionAttributeNames", {}).values())
        if "rateTat" in names or "rateTat" in str(params.get("UpdateExpression", "")):
            return  # the frame rate limit: one or two per frame, whatever the frame (limits.py)
        if operation == "TransactWriteItems":
            kinds = "+".join(next(iter(item)) for item in params["TransactItems"])
            self.ops[f"TransactWriteItems({kinds})"] += 1
        else:
            self.ops[operation] += 1

    def measure(self, act: Any) -> dict[str, int]:
        self.ops.clear()
        self.on = True
        try:
            act()
        finally:
            self.on = False
        return dict(self.ops)


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    recorder = Calls()
    original = botocore.client.BaseClient._make_api_call

    def recording(self: Any, operation: str, params: dict[str, Any]) -> Any:
        if self.meta.service_model.service_name == "dynamodb":
            recorder.record(operation, params)
        return original(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recording)
    return recorder


@pytest.fixture
def fn() -> FakeLambda:
    return FakeLambda()


@pytest.fixture
def h(registry: Registry, gateway: FakeGateway, fn: FakeLambda) -> Iterator[Harness]:
    sb: Switchboard = make_switchboard(registry, gateway, auth_mode="jwt")
    sb.access.authorizer = Authorizer(fn, {"authorize_support": "fn"}, clock=registry.now)
    app_module.reset_switchboard(sb)
    try:
        with Client(app_module.app) as chalice_client:
            yield Harness(chalice_client, gateway)
    finally:
        app_module.reset_switchboard(None)


# Every frame: the rate limit (one or two UpdateItems, left out here), whose write returns
# the connection item (no GetItem since #26). A join of a room new to the user: the
# rooms-per-user cap (GSI1 Query; a BatchGetItem only when the user has other connections),
# the join transaction
# (membership Put, connection Update, presence Update), and the enter event: the room-size
# check (Query), the log (UpdateItem for the seq, PutItem for the event), the room's audience
# (Query).
OPEN_JOIN = {
    "UpdateItem": 1,
    "Query": 3,
    "TransactWriteItems(Put+Update+Update)": 1,
    "PutItem": 1,
}
# ... and the authorizer's answer cached on the connection item.
AUTHORIZER_JOIN = {**OPEN_JOIN, "UpdateItem": 2}
# A send: the log's two writes, the audience Query (the frame's own read is folded in).
SEND = {"UpdateItem": 1, "PutItem": 1, "Query": 1}


def test_what_a_join_costs_in_each_namespace(h: Harness, calls: Calls, fn: FakeLambda) -> None:
    h.connect("a", "u_1", rooms={"private:x": FULL})
    # The default namespace: as before permissions.
    assert calls.measure(lambda: h.send("a", {"action": "join", "room": "lobby"})) == OPEN_JOIN
    # A capability namespace: the check reads only what the frame read already.
    assert calls.measure(lambda: h.send("a", {"action": "join", "room": "private:x"})) == OPEN_JOIN
    assert fn.calls == []
    # An authorizer namespace: one function call and one more write (the cached answer).
    joined = calls.measure(lambda: h.send("a", {"action": "join", "room": "support:u_1"}))
    assert joined == AUTHORIZER_JOIN
    assert len(fn.calls) == 1
    # Later operations in those rooms cost what they cost before: the grants are on the
    # connection item every frame reads anyway.
    for room in ("lobby", "private:x", "support:u_1"):
        sent = calls.measure(
            lambda r=room: h.send("a", {"action": "sendRoom", "room": r, "text": "x"})
        )
        assert sent == SEND, room
    assert len(fn.calls) == 1


def test_what_auto_join_adds_to_connect(h: Harness, calls: Calls, fn: FakeLambda) -> None:
    plain = calls.measure(lambda: h.connect("p", "u_p"))
    # The user's connection slots (Query), then the registration and its slot in one
    # transaction (#22 item 4).
    assert plain == {"Query": 1, "TransactWriteItems(Put+Put)": 1}
    rooms = ["lobby", "private:x", "support:u_m"]
    auto = calls.measure(lambda: h.connect("m", "u_m", rooms={"private:x": FULL}, autoJoin=rooms))
    # Per room: the join transaction; the support room's cached answer; the pending enters.
    assert auto == {
        "Query": 1,
        "TransactWriteItems(Put+Put)": 1,
        "TransactWriteItems(Put+Update+Update)": 3,
        "UpdateItem": 2,
    }
    assert len(fn.calls) == 1
    # The first frame announces the three enters: the take (UpdateItem) and per room the
    # size check, the log's two writes and the audience Query.
    first = calls.measure(lambda: h.send("m", {"action": "ping"}))
    assert first == {"UpdateItem": 1 + 3, "Query": 6, "PutItem": 3}
