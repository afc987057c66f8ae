"""Regression tests for the bugs the reliability scenarios found (small and deterministic)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib import protocol
from chalicelib.management_api import Outcome
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from local_gateway import EmbeddedDynamoDB, ensure_table, load_table_schema
from tests.gateways import scan_items
from tests.helpers import FakeGateway, connect_event, message_event
from tests.reliability.applog import AppLog
from tests.reliability.stack import REPO_ROOT

pytestmark = pytest.mark.timeout(60)


def _scan(ddb: Any, table: str) -> list[tuple[str, str]]:
    return sorted((i["PK"]["S"], i["SK"]["S"]) for i in scan_items(ddb, table))


# --- registry: a join that commits while remove() runs ----------------------------------------


def test_a_join_committed_while_remove_runs_is_removed_too(
    ddb: Any, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """remove() used to read the rooms, then batch-delete the connection and those rooms: a
    join committing in between left its membership behind for good (the connection item was
    gone, so no later prune could find it). The churn test's clients that close right after a
    join hit this hundreds of times."""
    conn = registry.register("c1", "u1", int(time.time() * 1000))
    registry.join(conn, "early")
    real_get_item = ddb.get_item
    raced: list[str] = []

    def get_item_then_a_join_commits(**kwargs: Any) -> Any:
        response = real_get_item(**kwargs)
        if not raced:
            raced.append("late")
            registry.join(conn, "late")  # the message handler's join, on another thread
        return response

    monkeypatch.setattr(ddb, "get_item", get_item_then_a_join_commits)
    assert registry.remove("c1") is True
    assert raced == ["late"]
    assert _scan(ddb, "test-connections") == []


def test_a_removal_that_fails_midway_is_finished_by_the_next_one(
    ddb: Any, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection item goes last: if removing fails after the memberships, it is still
    there for the next removal (a 410 prune) to find and finish."""
    conn = registry.register("c1", "u1", int(time.time() * 1000))
    registry.join(conn, "a")
    registry.join(conn, "b")
    real_delete_item = ddb.delete_item

    def throttled(**kwargs: Any) -> Any:
        raise ddb.exceptions.ProvisionedThroughputExceededException(
            {"Error": {"Code": "ProvisionedThroughputExceededException"}}, "DeleteItem"
        )

    monkeypatch.setattr(ddb, "delete_item", throttled)
    with pytest.raises(ddb.exceptions.ProvisionedThroughputExceededException):
        registry.remove("c1")
    assert _scan(ddb, "test-connections") == [("CONN#c1", "CONN")]
    monkeypatch.setattr(ddb, "delete_item", real_delete_item)
    assert registry.remove("c1") is True
    assert _scan(ddb, "test-connections") == []
    assert registry.remove("c1") is False


# --- protocol: lone surrogates ----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        r'{"action": "ping", "ref": "\ud800"}',
        r'{"action": "broadcastAll", "text": "hi \udfff", "ref": 1}',
        r'{"action": "sendMessage", "targetUserId": "u1", "text": "\ud83d"}',
    ],
)
def test_lone_surrogates_are_a_bad_request(raw: str) -> None:
    """JSON's "\\ud800" decodes to a str UTF-8 cannot encode: echoing it in the reply crashed
    the message handler (API Gateway's "Internal server error"); in a text it was sent as an
    "internal" error instead of a bad request."""
    parsed = protocol.parse_frame(raw)
    assert isinstance(parsed, protocol.ProtocolError)
    assert parsed.code == "bad_request" and "surrogate" in parsed.message
    pair = protocol.parse_frame(r'{"action": "broadcastAll", "text": "\ud83d\ude00"}')
    assert pair == protocol.BroadcastAll("\N{GRINNING FACE}")  # a surrogate pair is fine


def test_a_surrogate_ref_gets_an_error_frame_not_a_crash(
    switchboard: Switchboard, gateway: FakeGateway
) -> None:
    switchboard.on_connect(connect_event("c1", {"userId": "u1"}))
    result = switchboard.on_message(message_event("c1", r'{"action":"ping","ref":"\ud800"}'))
    assert result.status == 200
    assert gateway.last("c1")["code"] == "bad_request"


# --- service: a reply that cannot be delivered is logged --------------------------------------


@pytest.fixture
def app_log() -> Iterator[AppLog]:
    logger = logging.getLogger("switchboard")
    handler = AppLog()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_a_lost_reply_is_in_the_log(
    switchboard: Switchboard, gateway: FakeGateway, app_log: AppLog
) -> None:
    """The sender's ack goes through @connections like any post; when its retries run out
    the sender never learns the fan-out's report, so the event's log line records it."""
    switchboard.on_connect(connect_event("c1", {"userId": "u1"}))
    switchboard.on_connect(connect_event("c2", {"userId": "u2"}))
    gateway.outcomes["c1"] = Outcome.THROTTLED
    switchboard.on_message(message_event("c1", {"action": "broadcastAll", "text": "hi"}))
    [record] = [m for m in app_log.messages if m["action"] == "BroadcastAll"]
    assert (record["delivered"], record["reply"]) == (1, "throttled")
    gateway.outcomes.pop("c1")
    switchboard.on_message(message_event("c1", {"action": "ping"}))
    assert "reply" not in app_log.messages[-1]


# --- the local gateway's DynamoDB: concurrent requests -----------------------------------------


def test_embedded_dynamodb_is_safe_under_concurrent_transactions() -> None:
    """moto rolls a failed transaction back by restoring a deep copy of the whole table, taken
    before it ran: concurrent writes were undone (deleted items came back), and the copy itself
    could crash (HTTP 500). The local gateway runs handlers concurrently, so it serialises."""
    table = "concurrency"
    with EmbeddedDynamoDB(port=0) as dynamodb:
        client = dynamodb.client()
        ensure_table(client, table, load_table_schema(str(REPO_ROOT / "chalicelib/schema.json")))
        errors: list[str] = []
        for n in range(200):  # bystanders: the bigger the table, the longer moto's copy
            client.put_item(TableName=table, Item={"PK": {"S": f"X#{n}"}, "SK": {"S": "X"}})

        def key(n: int) -> dict[str, Any]:
            return {"PK": {"S": f"CONN#{n}"}, "SK": {"S": "CONN"}}

        done = threading.Event()

        def writer(base: int) -> None:
            local = dynamodb.client()
            for n in range(base, base + 5000):  # until the transactions are done
                if done.is_set():
                    return
                try:
                    local.put_item(TableName=table, Item={**key(n), "connectionId": {"S": "x"}})
                    local.delete_item(TableName=table, Key=key(n))
                except Exception as exc:  # noqa: BLE001 - collected and asserted on
                    errors.append(repr(exc))

        def failing_transactions() -> None:
            local = dynamodb.client()
            for n in range(15):
                try:
                    local.transact_write_items(
                        TransactItems=[
                            {"Put": {"TableName": table, "Item": {**key(-1 - n)}}},
                            {
                                "ConditionCheck": {
                                    "TableName": table,
                                    "Key": key(10**6),
                                    "ConditionExpression": "attribute_exists(PK)",
                                }
                            },
                        ]
                    )
                except local.exceptions.TransactionCanceledException:
                    pass
                except Exception as exc:  # noqa: BLE001 - collected and asserted on
                    errors.append(repr(exc))

        writers = [threading.Thread(target=writer, args=(k * 10_000,)) for k in range(4)]
        transactions = [threading.Thread(target=failing_transactions) for _ in range(4)]
        switch = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # interleave the threads (in the server) much more often
        try:
            for thread in writers + transactions:
                thread.start()
            for thread in transactions:
                thread.join(timeout=60)
            done.set()
            for thread in writers:
                thread.join(timeout=60)
        finally:
            sys.setswitchinterval(switch)
        assert errors == []
        left = [k for k in _scan(client, table) if not k[0].startswith("X#")]
        assert left == []  # nothing resurrected, no failed Put kept
