"""moto's DynamoDB made to cost what DynamoDB's does: the request, not the whole table.

The embedded DynamoDB is moto's (5.2.5). Some of its operations cost time in proportion to the
whole table, and the table only grows during a run (the message log keeps every message for a
day), so left alone the emulator, not the design, becomes the stack's largest cost:

- ``TransactWriteItems`` deep-copies the whole table once per item of the transaction, to roll
  back if a condition fails. A join (three items) copied the table three times; at soak scale
  that was a third of the stack's CPU, and every join, leave and $connect got slower as the
  log grew, until requests queued past their timeouts.
- ``Query``, on the table or on an index, walks and sorts every item of the table to keep those
  of the partition asked for.
- Projecting an item (an index's INCLUDE projection, a ``ProjectionExpression``) converts the
  whole item to plain JSON once per projected attribute: quadratic in the attributes.

What replaces them keeps moto's results, errors and error shapes; everything else (key
conditions, sorting, paging, filters, ScannedCount) is still moto's own code:

- a transaction runs item by item exactly as moto's does, but copies each item just before
  writing it and, if the transaction fails, puts back only those items (all or nothing, as
  DynamoDB documents:
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html);
  one difference: an entry with two operations undoes what was written before it (moto kept
  it; DynamoDB rejects the whole request);
- a Query hands moto's own query only its candidates (a thread-local read once by
  ``Table.all_items``, so concurrent callers in one process never see each other's): the
  table's partition (a dict lookup), or the items whose index key matches (one walk groups the
  table by that attribute; the groups are dropped on every write to the table);
- a projection of top-level names converts the item once.

``install()`` patches moto's classes once; ``EmbeddedDynamoDB`` calls it (and the benchmarks).
``enabled = False`` gives moto's own Query and projection back, to compare answers; the tests in
``tests/unit/local_gateway/test_moto_speedups.py`` compare every patched operation with moto's own.
"""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from typing import Any

ORIGINALS: dict[str, Any] = {}  # moto's own functions, once install() replaced them
enabled = True  # False: moto's own Query and projection (to compare answers; bench/)
_lock = threading.Lock()
_local = threading.local()  # .items: a Query's candidates, read by Table.all_items


def install() -> None:
    """Patch moto's DynamoDB backend (idempotent)."""
    with _lock:
        if ORIGINALS:
            return
        from moto.dynamodb.models import DynamoDBBackend
        from moto.dynamodb.models.dynamo_type import Item, serializer
        from moto.dynamodb.models.table import Table

        ORIGINALS.update(
            query=Table.query,
            all_items=Table.all_items,
            put_item=Table.put_item,
            delete_item=Table.delete_item,
            update_item=DynamoDBBackend.update_item,
            project=Item.project,
            transact_write_items=DynamoDBBackend.transact_write_items,
        )
        original_query = ORIGINALS["query"]
        original_all_items = ORIGINALS["all_items"]
        original_put, original_delete = ORIGINALS["put_item"], ORIGINALS["delete_item"]
        original_update, original_project = ORIGINALS["update_item"], ORIGINALS["project"]

        def all_items(self: Any) -> Any:
            override = getattr(_local, "items", None)
            if override is not None:
                _local.items = None  # one use: the Query's own walk for candidates
                return override
            return original_all_items(self)

        def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
            _changed(self)
            return original_put(self, *args, **kwargs)

        def delete_item(self: Any, *args: Any, **kwargs: Any) -> Any:
            _changed(self)
            return original_delete(self, *args, **kwargs)

        def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
            # Updates change items in place; an index key may be among the changes.
            try:
                return original_update(self, table_name, *args, **kwargs)
            finally:
                _changed(self.get_table(table_name))

        def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
            if not enabled:
                return original_query(self, hash_key, *args, **kwargs)
            index_name = kwargs.get("index_name") or (args[6] if len(args) > 6 else None)
            conditions = kwargs.get("hash_key_conditions") or []
            if index_name:
                if len(conditions) != 1:
                    return original_query(self, hash_key, *args, **kwargs)
                attribute, value = conditions[0]
                candidates = _index_partition(self, original_all_items, attribute, value)
            else:
                partition = self.items.get(hash_key)
                if partition is None:
                    candidates = []
                elif self.range_key_attr:
                    candidates = list(partition.values())
                else:
                    candidates = [partition]
            _local.items = candidates
            try:
                return original_query(self, hash_key, *args, **kwargs)
            finally:
                _local.items = None

        def project(self: Any, projection_expressions: list[list[str]]) -> Any:
            # moto converts the whole item to plain JSON once per projected attribute; once is
            # enough when every attribute is a top-level name (nested paths: moto's own code).
            if not enabled or any(len(e) != 1 or "[" in e[0] for e in projection_expressions):
                return original_project(self, projection_expressions)
            regular = self.to_regular_json()
            result = {e[0]: regular[e[0]] for e in projection_expressions if e[0] in regular}
            return Item(
                hash_key=self.hash_key,
                range_key=self.range_key,
                attrs=serializer.serialize(result)["M"],
            )

        Item.project = project  # type: ignore[method-assign]
        Table.all_items = all_items  # type: ignore[method-assign]
        Table.query = query  # type: ignore[method-assign]
        Table.put_item = put_item  # type: ignore[method-assign]
        Table.delete_item = delete_item  # type: ignore[method-assign]
        DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
        DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


_versions = threading.Lock()  # guards each table's version and index cache


def _changed(table: Any) -> None:
    """A write to ``table``: its cached index partitions are stale."""
    with _versions:
        table.__dict__["_speedups_version"] = table.__dict__.get("_speedups_version", 0) + 1


def _index_partition(table: Any, walk: Any, attribute: str, value: Any) -> list[Any]:
    """The items whose ``attribute`` is ``value``: one walk of the table groups every item by
    that attribute, reused until the next write."""
    with _versions:
        version = table.__dict__.get("_speedups_version", 0)
        cache = table.__dict__.get("_speedups_partitions")
        if cache is None or cache[0] != version:
            cache = (version, {})
            table.__dict__["_speedups_partitions"] = cache
        groups = cache[1].get(attribute)
        if groups is None:
            groups = defaultdict(list)
            for item in walk(table):
                key = item.attrs.get(attribute)
                if key is None:
                    continue
                try:
                    groups[key].append(item)
                except TypeError:  # a list, map or set: never equal to a key value (moto skips it)
                    continue
            cache[1][attribute] = groups
        return list(groups.get(value, ()))


def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """moto's ``DynamoDBBackend.transact_write_items``, item by item as moto does it, with a
    copy of each item taken before it is written instead of a copy of every table."""
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
    backups: list[tuple[str, dict[str, Any], Any]] = []  # (table, key, item before its write)

    def rollback() -> None:
        for table_name, key, item in reversed(backups):
            table = self.get_table(table_name)
            hash_key, range_key = self.get_keys_value(table, key)
            table.delete_item(hash_key, range_key)  # marks the table changed
            if item is None:
                continue
            if range_key is not None:
                table.items[hash_key][range_key] = item
            else:
                table.items[hash_key] = item

    seen: set[tuple[str, str]] = set()
    errors: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    for entry in transact_items:
        original_item: dict[str, Any] | None = None
        if len(entry) > 1:
            rollback()  # moto keeps what it wrote so far; DynamoDB rejects the whole request
            raise TransactWriteSingleOpException
        try:
            op_type, op = next(iter(entry.items()))
            if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
                raise ValueError("Unsupported transaction operation")
            table_name = op["TableName"]
            condition = op.get("ConditionExpression")
            names = op.get("ExpressionAttributeNames")
            values = op.get("ExpressionAttributeValues")
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
            if condition is not None:
                if not get_filter_expression(condition, names, values).expr(current):
                    if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                        original_item = current.to_json()["Attributes"]
                    raise ConditionalCheckFailed(item=original_item)
            if op_type != "ConditionCheck":
                # update_item changes the item in place: keep a copy, not the item.
                backups.append((table_name, key, copy.deepcopy(current)))
            expression = {
                "condition_expression": condition,
                "expression_attribute_names": names,
                "expression_attribute_values": values,
            }
            if op_type == "Put":
                self.put_item(table_name, op["Item"], **expression)
            elif op_type == "Delete":
                self.delete_item(table_name, key, **expression)
            elif op_type == "Update":
                self.update_item(
                    table_name, key, update_expression=op["UpdateExpression"], **expression
                )
            errors.append((None, None, None))
        except (MultipleTransactionsException, MockValidationException):
            rollback()
            raise
        except ConditionalCheckFailed as exc:
            errors.append(("ConditionalCheckFailed", str(exc.message), original_item))
        except Exception as exc:  # noqa: BLE001 - moto reports any other failure per item
            errors.append((type(exc).__name__, str(exc), original_item))
    if any(code is not None for code, _, _ in errors):
        rollback()
        raise TransactionCanceledException(errors)
