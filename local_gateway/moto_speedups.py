"""Two of moto's DynamoDB operations made O(request) instead of O(table), same answers.

The embedded DynamoDB is moto's. Two of its operations cost time in proportion to the whole
table, and the table only grows during a run (the message log keeps every message for a day):

- ``TransactWriteItems`` deep-copies the whole table once per item of the transaction, to roll
  back if a condition fails. A join (three items) copied the table three times; at soak scale
  that was a third of the stack's CPU and every join, leave and $connect got slower as the log
  grew, until requests queued past their timeouts.
- ``Query`` on the table's own key walks every item of the table and keeps those of the
  partition asked for (a plain dict lookup finds them).

What replaces them keeps moto's results, errors and error shapes:

- a transaction first checks every item's key and condition against the table as it is (each
  item is a different key, so checking them in order or all up front is the same) and only
  then applies the writes; a write that still fails puts back the items it touched (copies of
  those items only, taken before the first write). DynamoDB's documented semantics, all or
  nothing: https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html
- a Query without ``IndexName`` hands moto's own query the items of the one partition instead
  of the whole table (a thread-local hint read by ``Table.all_items``, so concurrent callers in
  one process, such as tests under ``mock_aws``, never see each other's hint).

``install()`` patches moto's classes once; ``EmbeddedDynamoDB`` calls it. The tests in
``tests/unit/test_moto_speedups.py`` compare both against moto's own on the same requests.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

ORIGINALS: dict[str, Any] = {}  # moto's own functions, once install() replaced them
_lock = threading.Lock()
_hint = threading.local()  # .partition: (table, hash key) while a table Query runs


def install() -> None:
    """Patch moto's DynamoDB backend (idempotent)."""
    with _lock:
        if ORIGINALS:
            return
        from moto.dynamodb.models import DynamoDBBackend
        from moto.dynamodb.models.table import Table

        original_query = ORIGINALS["query"] = Table.query
        original_all_items = ORIGINALS["all_items"] = Table.all_items
        ORIGINALS["transact_write_items"] = DynamoDBBackend.transact_write_items

        def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
            index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
            if index_name or not self.has_range_key or hash_key is None:
                return original_query(self, hash_key, *args, **kwargs)
            _hint.partition = (self, hash_key)
            try:
                return original_query(self, hash_key, *args, **kwargs)
            finally:
                _hint.partition = None

        def all_items(self: Table) -> Any:
            hint = getattr(_hint, "partition", None)
            if hint is not None and hint[0] is self:
                _hint.partition = None  # one use: the query's own scan for candidates
                partition = self.items.get(hint[1])
                return list(partition.values()) if partition else []
            return original_all_items(self)

        Table.query = query  # type: ignore[method-assign]
        Table.all_items = all_items  # type: ignore[method-assign]
        DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto's ``DynamoDBBackend.transact_write_items``: check everything, then write."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    seen: set[tuple[str, str]] = set()
    planned: list[tuple[str, dict[str, Any], str, dict[str, Any]]] = []
    errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        original_item: dict[str, Any] | None = None
        try:
            op_type, op = next(iter(entry.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            if op_type == "Put":
                table = self.get_table(table_name)
                attrs = op["Item"]
                key = {table.hash_key_attr: attrs[table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = attrs[table.range_key_attr]
            else:
                key = op["Key"]
            unique = (str(table_name), str(dict(sorted(key.items()))))
            if unique in seen:
                raise MultipleTransactionsException()
            seen.add(unique)
            current = self.get_item(table_name, key)
            condition = op.get("ConditionExpression")
            if condition is not None:
                check = get_filter_expression(
                    condition,
                    op.get("ExpressionAttributeNames"),
                    op.get("ExpressionAttributeValues"),
                )
                if not check.expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            planned.append((op_type, op, table_name, key))
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            raise  # nothing written yet: no rollback needed
        except ConditionalCheckFailed as exc:
            errors.append(("ConditionalCheckFailed", str(exc.message), original_item))
        except Exception as exc:  # noqa: BLE001 - moto reports any other failure per item
            errors.append((type(exc).__name__, str(exc), original_item))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)

    backups = [
        (table_name, key, copy.deepcopy(self.get_item(table_name, key)))
        for _, _, table_name, key in planned
    ]
    for n, (op_type, op, table_name, key) in enumerate(planned):
        names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        try:
            if op_type == "Put":
                self.put_item(
                    table_name,
                    op["Item"],
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
            elif op_type == "Delete":
                self.delete_item(table_name, key)
            elif op_type == "Update":
                self.update_item(
                    table_name,
                    key,
                    update_expression=op["UpdateExpression"],
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
        except Exception as exc:
            for backup_table, backup_key, item in backups:
                table = self.get_table(backup_table)
                hash_key, range_key = self.get_keys_value(table, backup_key)
                table.delete_item(hash_key, range_key)
                if item is not None:
                    if range_key is not None:
                        table.items[hash_key][range_key] = item
                    else:
                        table.items[hash_key] = item
            if isinstance(exc, MockValidationException):
                raise
            failed: list[tuple[str | None, str | None, dict[str, Any] | None]] = [
                (None, None, None)
            ] * len(errors)
            failed[n] = (type(exc).__name__, str(exc), None)
            raise TransactionCanceledException(failed) from exc
