"""DynamoDB (chalicelib/table.py) against botocore's Stubber: what moto cannot make happen.

The contract test (tests/functional/chalicelib/test_table_contract.py) pins the layer's results
on moto; these pin the paths moto never takes: batches DynamoDB leaves partly unprocessed,
a condition failure after botocore resent the request, and a transaction's reasons. No network:
the Stubber answers every call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Attr
from botocore.stub import Stubber

from chalicelib import keys
from chalicelib.table import (
    Change,
    ConditionFailed,
    DynamoDB,
    Put,
    TransactionCancelled,
    UnprocessedItems,
    Update,
)

TABLE = "t"


@pytest.fixture
def stubbed(aws_env: None) -> Iterator[tuple[DynamoDB, Stubber, list[float]]]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    slept: list[float] = []
    with Stubber(client) as stub:
        yield DynamoDB(client, TABLE, clock=lambda: 100.0, sleep=slept.append), stub, slept
        stub.assert_no_pending_responses()


def delete_request(cid: str) -> dict[str, Any]:
    return {"DeleteRequest": {"Key": {"PK": {"S": f"CONN#{cid}"}, "SK": {"S": "CONN"}}}}


def test_a_batch_delete_resends_what_was_left_unprocessed(
    stubbed: tuple[DynamoDB, Stubber, list[float]],
) -> None:
    table, stub, slept = stubbed
    both = [delete_request("a"), delete_request("b")]
    stub.add_response(
        "batch_write_item",
        {"UnprocessedItems": {TABLE: [delete_request("b")]}},
        {"RequestItems": {TABLE: both}},
    )
    stub.add_response(
        "batch_write_item",
        {"UnprocessedItems": {}},
        {"RequestItems": {TABLE: [delete_request("b")]}},
    )
    table.batch_delete([keys.conn_key("a"), keys.conn_key("b")])
    assert slept == [0.05]  # backed off once before the resend


def test_a_batch_delete_still_unprocessed_after_the_retries_raises(
    stubbed: tuple[DynamoDB, Stubber, list[float]],
) -> None:
    table, stub, slept = stubbed
    for _ in range(8):
        stub.add_response("batch_write_item", {"UnprocessedItems": {TABLE: [delete_request("a")]}})
    with pytest.raises(UnprocessedItems):
        table.batch_delete([keys.conn_key("a")])
    assert len(slept) == 8


def test_a_batch_get_resends_unprocessed_keys_and_decodes_plain_values(
    stubbed: tuple[DynamoDB, Stubber, list[float]],
) -> None:
    table, stub, _ = stubbed
    key_b = {"PK": {"S": "CONN#b"}, "SK": {"S": "CONN"}}
    stub.add_response(
        "batch_get_item",
        {
            "Responses": {TABLE: [{"rooms": {"SS": ["r1"]}, "ttl": {"N": "200"}}]},
            "UnprocessedKeys": {TABLE: {"Keys": [key_b]}},
        },
    )
    stub.add_response(
        "batch_get_item",
        {"Responses": {TABLE: [{"rooms": {"SS": ["r2"]}, "ttl": {"N": "50"}}]}},
        {"RequestItems": {TABLE: {"Keys": [key_b]}}},
    )
    items = table.batch_get([keys.conn_key("a"), keys.conn_key("b")], ("rooms", "ttl"))
    assert items == [{"rooms": {"r1"}, "ttl": 200}, {"rooms": {"r2"}, "ttl": 50}]


def test_a_complete_batch_get_raises_on_keys_still_unprocessed_after_the_retries(
    stubbed: tuple[DynamoDB, Stubber, list[float]],
) -> None:
    table, stub, slept = stubbed
    key_a = {"PK": {"S": "CONN#a"}, "SK": {"S": "CONN"}}
    for _ in range(16):
        stub.add_response(
            "batch_get_item", {"Responses": {}, "UnprocessedKeys": {TABLE: {"Keys": [key_a]}}}
        )
    # Left out by default (the caller cannot tell it from a missing item) ...
    assert table.batch_get([keys.conn_key("a")]) == []
    # ... or, asked to be complete, an error the caller can retry on.
    with pytest.raises(UnprocessedItems, match="1 keys left unprocessed"):
        table.batch_get([keys.conn_key("a")], complete=True)
    assert len(slept) == 16


def test_a_condition_failure_carries_the_old_item_and_whether_botocore_resent(
    stubbed: tuple[DynamoDB, Stubber, list[float]],
) -> None:
    table, stub, _ = stubbed
    stub.add_client_error(
        "update_item",
        service_error_code="ConditionalCheckFailedException",
        http_status_code=400,
        modeled_fields={"Item": {"PK": {"S": "ROOM#r"}, "SK": {"S": "USER#u"}, "n": {"N": "3"}}},
        response_meta={"RetryAttempts": 1},
    )
    with pytest.raises(ConditionFailed) as failed:
        table.update(
            keys.presence_key("r", "u"),
            Update(delete={"conns": {"a"}}),
            condition=Attr("conns").contains("a"),
            old_on_failure=True,
        )
    assert failed.value.old == {"PK": "ROOM#r", "SK": "USER#u", "n": 3}
    assert failed.value.retried is True


def test_a_cancelled_transaction_lists_a_reason_per_item(
    stubbed: tuple[DynamoDB, Stubber, list[float]],
) -> None:
    table, stub, _ = stubbed
    stub.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        http_status_code=400,
        modeled_fields={"CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict"}]},
    )
    with pytest.raises(TransactionCancelled) as cancelled:
        table.transact(
            [
                Put({**keys.member_key("r", "a"), "connectionId": "a"}),
                Change(keys.conn_key("a"), Update(add={"rooms": {"r"}}), Attr("PK").exists()),
            ]
        )
    assert cancelled.value.reasons == ["None", "TransactionConflict"]
