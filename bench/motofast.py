"""Make moto's DynamoDB Query cost what DynamoDB's does: the queried partition, not the table.

moto (5.2.5) answers every Query, on the table or on an index, by walking and sorting *all*
the table's items, so a Query on a 125-item partition of a 10,000-item table costs as much
as a Scan. DynamoDB reads only the partition. Left alone, that would charge switchboard's
index reads (8 shard Queries per broadcast) eight table walks and make the emulator, not the
design, the largest cost in the fan-out numbers.

Also, moto projects an item (an index's INCLUDE projection, a ``ProjectionExpression``) by
converting the *whole* item to plain JSON once per projected attribute: quadratic in the
attributes, so reading four attributes of twelve costs ~50 conversions per item. DynamoDB has
no such cost, and it would charge switchboard (four attributes read through an INCLUDE index)
far more than the seed (``PK`` only).

``install()`` (called in the benchmark's DynamoDB process and around the registry-cost runs)
hands moto's own ``Table.query`` only the items whose key attribute matches the queried
value, and converts an item once per projection; everything else (key conditions, sorting, paging, filters, projections, ScannedCount)
is still moto's code. Scans are untouched: they walk the whole table, as on DynamoDB.
Index partitions are cached and dropped on every write. ``check()`` compares patched and
unpatched answers.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

_local = threading.local()
_installed = False
enabled = True  # False: moto's own walk of the whole table (to compare answers)


def install() -> None:
    global _installed
    if _installed:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.dynamo_type import Item, serializer
    from moto.dynamodb.models.table import Table

    original_all_items = Table.all_items
    original_query = Table.query
    original_put = Table.put_item
    original_delete = Table.delete_item
    original_update = DynamoDBBackend.update_item
    original_project = Item.project
    lock = threading.Lock()

    def all_items(self: Any) -> Any:
        override = getattr(_local, "items", None)
        if override is not None:
            return override
        return original_all_items(self)

    def _bump(self: Any) -> None:
        self.__dict__["_bench_version"] = self.__dict__.get("_bench_version", 0) + 1

    def put_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            _bump(self)
            return original_put(self, *args, **kwargs)

    def delete_item(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            _bump(self)
            return original_delete(self, *args, **kwargs)

    def update_item(self: Any, table_name: str, *args: Any, **kwargs: Any) -> Any:
        # Updates change items in place; an index key may be among the changes.
        try:
            return original_update(self, table_name, *args, **kwargs)
        finally:
            with lock:
                _bump(self.get_table(table_name))

    def _partition(self: Any, attribute: str, value: Any) -> list[Any]:
        with lock:
            version = self.__dict__.get("_bench_version", 0)
            cache = self.__dict__.get("_bench_partitions")
            if cache is None or cache[0] != version:
                cache = (version, {})
                self.__dict__["_bench_partitions"] = cache
            groups = cache[1].get(attribute)
            if groups is None:
                groups = defaultdict(list)
                for item in original_all_items(self):
                    key = item.attrs.get(attribute)
                    if key is not None:
                        groups[key].append(item)
                cache[1][attribute] = groups
            return list(groups.get(value, ()))

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        if not enabled:
            return original_query(self, hash_key, *args, **kwargs)
        index_name = kwargs.get("index_name") or (args[6] if len(args) > 6 else None)
        conditions = kwargs.get("hash_key_conditions") or []
        if index_name:
            if len(conditions) != 1:
                return original_query(self, hash_key, *args, **kwargs)
            attribute, value = conditions[0]
            candidates = _partition(self, attribute, value)
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
    _installed = True


def installed() -> bool:
    return _installed
