"""The embedded DynamoDB's faster transactions and queries answer exactly as moto's own.

Every case runs the same request twice on twin tables (same items): once with moto's own
function, once with ours, and compares the error (type and cancellation reasons) and the
items left in the table.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from local_gateway import moto_speedups

REGION = "us-east-1"


@pytest.fixture
def backend() -> Iterator[Any]:
    moto_speedups.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        for name in ("ours", "moto"):
            client.create_table(
                TableName=name,
                AttributeDefinitions=[
                    {"AttributeName": "PK", "AttributeType": "S"},
                    {"AttributeName": "SK", "AttributeType": "S"},
                    {"AttributeName": "tag", "AttributeType": "S"},
                ],
                KeySchema=[
                    {"AttributeName": "PK", "KeyType": "HASH"},
                    {"AttributeName": "SK", "KeyType": "RANGE"},
                ],
                BillingMode="PAY_PER_REQUEST",
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "byTag",
                        "KeySchema": [
                            {"AttributeName": "tag", "KeyType": "HASH"},
                            {"AttributeName": "SK", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["n"]},
                    }
                ],
            )
            for p in range(3):
                for s in range(4):
                    client.put_item(
                        TableName=name,
                        Item={
                            "PK": {"S": f"P{p}"},
                            "SK": {"S": f"S{s}"},
                            "n": {"N": str(s)},
                            "tag": {"S": "even" if s % 2 == 0 else "odd"},
                        },
                    )
        from moto.dynamodb.models import dynamodb_backends

        yield dynamodb_backends[client.meta.config.__dict__.get("account_id", "123456789012")][
            REGION
        ]


def _items(backend: Any, name: str) -> list[dict[str, Any]]:
    table = backend.get_table(name)
    return sorted(
        (item.to_json()["Attributes"] for item in table.all_items()),
        key=lambda a: (a["PK"]["S"], a["SK"]["S"]),
    )


def _for(table: str, transact_items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The transaction with every TableName set to ``table``."""
    items = copy.deepcopy(transact_items)
    for entry in items:
        for op in entry.values():
            op["TableName"] = table
    return items


def _outcome(call: Any, backend: Any, items: list[dict[str, Any]]) -> tuple[str, Any]:
    try:
        call(backend, items)
    except Exception as exc:  # noqa: BLE001 - compared between the two implementations
        body = json.loads(getattr(exc, "description", None) or "{}")
        return type(exc).__name__, body.get("CancellationReasons", str(exc))
    return "ok", None


def _both(backend: Any, transact_items: list[dict[str, Any]]) -> tuple[str, Any]:
    ours = _outcome(moto_speedups.transact_write_items, backend, _for("ours", transact_items))
    theirs = _outcome(
        moto_speedups.ORIGINALS["transact_write_items"], backend, _for("moto", transact_items)
    )
    assert ours == theirs
    assert _items(backend, "ours") == _items(backend, "moto")
    return ours


def _key(p: int, s: int) -> dict[str, Any]:
    return {"PK": {"S": f"P{p}"}, "SK": {"S": f"S{s}"}}


PUT_NEW = {"Put": {"Item": {**_key(0, 9), "n": {"N": "9"}}}}
UPDATE = {
    "Update": {
        "Key": _key(1, 1),
        "UpdateExpression": "ADD n :one SET tag = :t",
        "ConditionExpression": "attribute_exists(PK)",
        "ExpressionAttributeValues": {":one": {"N": "1"}, ":t": {"S": "bumped"}},
    }
}
DELETE = {"Delete": {"Key": _key(2, 2), "ConditionExpression": "attribute_exists(PK)"}}
CHECK = {"ConditionCheck": {"Key": _key(0, 0), "ConditionExpression": "attribute_exists(PK)"}}
FAILING = {
    "ConditionCheck": {
        "Key": _key(0, 1),
        "ConditionExpression": "attribute_not_exists(PK)",
        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
    }
}


def test_a_transaction_whose_conditions_hold_writes_every_item(backend: Any) -> None:
    assert _both(backend, [PUT_NEW, UPDATE, DELETE, CHECK]) == ("ok", None)
    assert {"PK": {"S": "P0"}, "SK": {"S": "S9"}, "n": {"N": "9"}} in _items(backend, "ours")


def test_a_failed_condition_writes_nothing_and_reports_each_item(backend: Any) -> None:
    kind, reasons = _both(backend, [PUT_NEW, UPDATE, FAILING, DELETE])
    assert kind == "TransactionCanceledException"
    assert [r["Code"] for r in reasons] == ["None", "None", "ConditionalCheckFailed", "None"]
    assert reasons[2]["Item"]["SK"] == {"S": "S1"}  # ALL_OLD


def test_two_writes_to_one_item_are_refused(backend: Any) -> None:
    again = {"Delete": {"Key": _key(1, 1)}}
    kind, _ = _both(backend, [UPDATE, again])
    assert kind == "MultipleTransactionsException"


def test_a_write_that_fails_after_the_checks_puts_back_what_was_written(backend: Any) -> None:
    # ADD of a number to a string attribute passes every condition and fails when applied.
    bad = {
        "Update": {
            "Key": _key(2, 0),
            "UpdateExpression": "ADD tag :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }
    before = _items(backend, "moto")
    kind, _ = _both(backend, [PUT_NEW, UPDATE, bad])
    assert kind != "ok"
    assert _items(backend, "ours") == before


@pytest.mark.parametrize(
    ("range_comparison", "range_values", "limit", "forward", "start"),
    [
        (None, [], None, True, None),
        ("BEGINS_WITH", ["S"], 2, True, None),
        ("BETWEEN", ["S1", "S3"], None, False, None),
        (None, [], 2, True, {"PK": {"S": "P1"}, "SK": {"S": "S1"}}),
    ],
)
def test_a_query_of_one_partition_finds_what_moto_finds(
    backend: Any,
    range_comparison: str | None,
    range_values: list[str],
    limit: int | None,
    forward: bool,
    start: dict[str, Any] | None,
) -> None:
    from moto.dynamodb.models.dynamo_type import DynamoType

    table = backend.get_table("ours")
    args = (
        DynamoType({"S": "P1"}),
        range_comparison,
        [DynamoType({"S": v}) for v in range_values],
        limit,
        start,
        forward,
        None,
    )
    ours = table.query(*args)
    theirs = moto_speedups.ORIGINALS["query"](table, *args)
    assert [i.to_json() for i in ours[0]] == [i.to_json() for i in theirs[0]]
    assert ours[1:] == theirs[1:]
    assert ours[0] and all(i.hash_key == DynamoType({"S": "P1"}) for i in ours[0])
    # The hint is used once: a Scan afterwards still sees the whole table.
    assert len(table.all_items()) == 12


def _query_both(client: Any, **params: Any) -> dict[str, Any]:
    """The Query's answer, patched; the same with moto's own code must be equal."""
    ours = client.query(TableName="ours", **params)
    moto_speedups.enabled = False
    try:
        theirs = client.query(TableName="ours", **params)
    finally:
        moto_speedups.enabled = True
    for answer in (ours, theirs):
        answer.pop("ResponseMetadata")
    assert ours == theirs
    return ours


def test_an_index_query_finds_what_moto_finds_before_and_after_writes(backend: Any) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    by_tag: dict[str, Any] = {
        "IndexName": "byTag",
        "KeyConditionExpression": "tag = :t",
        "ExpressionAttributeValues": {":t": {"S": "even"}},
    }
    first = _query_both(client, **by_tag)
    assert first["Count"] == 6 and all("tag" in item for item in first["Items"])
    assert _query_both(client, **by_tag, Limit=4, ProjectionExpression="SK, n")["Count"] == 4
    # A write changes an index key in place: the grouped index partitions must not be stale.
    client.update_item(
        TableName="ours",
        Key=_key(0, 1),
        UpdateExpression="SET tag = :t",
        ExpressionAttributeValues={":t": {"S": "even"}},
    )
    assert _query_both(client, **by_tag)["Count"] == 7
    client.delete_item(TableName="ours", Key=_key(2, 0))
    assert _query_both(client, **by_tag)["Count"] == 6
    # A transaction that fails puts its items back; the index sees them again.
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(
            TransactItems=_for("ours", [{"Delete": {"Key": _key(1, 0)}}, FAILING])
        )
    assert _query_both(client, **by_tag)["Count"] == 6


@pytest.mark.parametrize("order", ["failing-first", "failing-last"])
def test_a_validation_error_while_writing_wins_over_a_failed_condition(
    backend: Any, order: str
) -> None:
    # Changing a key attribute fails only when the update is applied: moto raises that
    # validation error whatever the other items' conditions say; so must we.
    rekey = {
        "Update": {
            "Key": _key(1, 2),
            "UpdateExpression": "SET SK = :v",
            "ExpressionAttributeValues": {":v": {"S": "moved"}},
        }
    }
    items = [FAILING, rekey] if order == "failing-first" else [rekey, FAILING]
    kind, _ = _both(backend, items)
    assert kind != "TransactionCanceledException"


def test_an_index_key_of_the_wrong_type_is_left_out_as_moto_does(backend: Any) -> None:
    client = boto3.client("dynamodb", region_name=REGION)
    client.put_item(
        TableName="ours", Item={**_key(0, 7), "tag": {"L": [{"S": "even"}]}, "n": {"N": "7"}}
    )
    answer = _query_both(
        client,
        IndexName="byTag",
        KeyConditionExpression="tag = :t",
        ExpressionAttributeValues={":t": {"S": "even"}},
    )
    assert answer["Count"] == 6
