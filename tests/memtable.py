"""An in-memory ``Table`` (chalicelib/table.py): the one table without DynamoDB, for fast tests.

It keeps items as plain Python values, evaluates boto3 condition objects itself (the operators
the domain services use: and/or/not, comparisons, between, begins_with, contains, size,
attribute_exists/not_exists), applies ``Update`` (SET, ADD to numbers and sets, DELETE from
sets; a set emptied by DELETE disappears, as in DynamoDB), pages Queries with a small default
page size (so paging is exercised), filters after ``Limit`` like DynamoDB, keeps the indexes of
schema.json (sparse, projected as declared) and runs transactions all or nothing with a reason
per item. ``tests/functional/chalicelib/test_table_contract.py`` runs the same cases against it
and against moto, so the two cannot drift.

Test code only: chalicelib ships in the Lambda zip and holds none of this.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from boto3.dynamodb.conditions import AttributeBase, ConditionBase, Size

from chalicelib.schema import load_schema
from chalicelib.table import (
    Change,
    ConditionFailed,
    Delete,
    Item,
    ItemKey,
    Page,
    Put,
    Query,
    ReturnValues,
    TransactionCancelled,
    TxOp,
    Update,
    key_condition,
    key_names,
    live_filter,
)

_MISSING = object()


def _index_projections() -> dict[str, tuple[str, ...] | None]:
    """Each index's projected non-key attributes (None: ALL), from schema.json."""
    out: dict[str, tuple[str, ...] | None] = {}
    for index in load_schema().get("GlobalSecondaryIndexes", []):
        projection = index["Projection"]
        if projection["ProjectionType"] == "ALL":
            out[index["IndexName"]] = None
        elif projection["ProjectionType"] == "KEYS_ONLY":
            out[index["IndexName"]] = ()
        else:
            out[index["IndexName"]] = tuple(projection.get("NonKeyAttributes", ()))
    return out


class MemoryTable:
    """``Table`` in a dict. ``page_size`` is the Limit a Query without one runs with (DynamoDB
    pages at 1 MB; a small page makes every test page)."""

    def __init__(self, clock: Callable[[], float] = time.time, page_size: int = 3) -> None:
        self._clock = clock
        self.page_size = page_size
        self._items: dict[tuple[str, str], Item] = {}
        self._lock = threading.RLock()
        self._projections = _index_projections()
        # Operation names in call order: lets a test count calls as it would on DynamoDB.
        self.calls: list[str] = []

    def now(self) -> float:
        return float(self._clock())

    # --- helpers --------------------------------------------------------------------------

    @staticmethod
    def _pk(key: ItemKey | Item) -> tuple[str, str]:
        return str(key["PK"]), str(key["SK"])

    def _find(self, key: ItemKey) -> Item | None:
        item = self._items.get(self._pk(key))
        return copy.deepcopy(item) if item is not None else None

    def _check(self, item: Item | None, condition: ConditionBase | None) -> bool:
        return condition is None or bool(_evaluate(condition, item or {}))

    # --- single items ---------------------------------------------------------------------

    def get(
        self, key: ItemKey, *, consistent: bool = False, projection: Sequence[str] | None = None
    ) -> Item | None:
        with self._lock:
            self.calls.append("get")
            item = self._find(key)
        if item is None:
            return None
        return _project(item, projection)

    def put(
        self, item: Item, *, condition: ConditionBase | None = None, old_on_failure: bool = False
    ) -> None:
        with self._lock:
            self.calls.append("put")
            old = self._find(item)
            if not self._check(old, condition):
                raise ConditionFailed(old if old_on_failure else None)
            self._items[self._pk(item)] = copy.deepcopy(item)

    def update(
        self,
        key: ItemKey,
        update: Update,
        *,
        condition: ConditionBase | None = None,
        returns: ReturnValues = "NONE",
        old_on_failure: bool = False,
    ) -> Item | None:
        with self._lock:
            self.calls.append("update")
            old = self._find(key)
            if not self._check(old, condition):
                raise ConditionFailed(old if old_on_failure else None)
            new = _apply(old if old is not None else dict(key), update)
            self._items[self._pk(key)] = new
            return _returned(old or {}, copy.deepcopy(new), update, returns)

    def delete(
        self, key: ItemKey, *, condition: ConditionBase | None = None, return_old: bool = False
    ) -> Item | None:
        with self._lock:
            self.calls.append("delete")
            old = self._find(key)
            if not self._check(old, condition):
                raise ConditionFailed(None)
            self._items.pop(self._pk(key), None)
            return old if return_old else None

    # --- queries --------------------------------------------------------------------------

    def _view(self, index: str | None) -> list[Item]:
        """The items of the table or of an index (sparse: only items with its key), sorted by
        sort key, each as the index projects it."""
        if index is None:
            items = list(self._items.values())
            return sorted(items, key=lambda i: (i["PK"], i["SK"]))
        pk, sk = key_names(index)
        projected = self._projections[index]
        view = []
        for item in self._items.values():
            if pk in item and sk in item:
                keep = None if projected is None else ("PK", "SK", pk, sk, *projected)
                view.append(_project(item, keep))
        return sorted(view, key=lambda i: (i[pk], i[sk], i["PK"], i["SK"]))

    def _last_key(self, item: Item, index: str | None) -> ItemKey:
        names = {"PK", "SK", *(key_names(index) if index else ())}
        return {n: str(item[n]) for n in sorted(names)}

    def query(self, query: Query) -> Page:
        with self._lock:
            self.calls.append("query")
            condition = key_condition(query)
            view = [i for i in self._view(query.index) if _evaluate(condition, i)]
            now = self.now()
        if query.descending:
            view.reverse()
        if query.start:
            start = self._last_key_tuple(query.start, query.index)
            after = (lambda o: o < start) if query.descending else (lambda o: o > start)
            view = [i for i in view if after(self._order(i, query.index))]
        limit = query.limit if query.limit is not None else self.page_size
        evaluated = view[:limit]
        more = len(view) > limit
        filtered = live_filter(query, now)
        items = [
            _project(copy.deepcopy(i), query.projection)
            for i in evaluated
            if filtered is None or _evaluate(filtered, i)
        ]
        last = self._last_key(evaluated[-1], query.index) if more and evaluated else None
        return Page(items, last)

    def _order(self, item: Item | ItemKey, index: str | None) -> tuple[str, ...]:
        if index is None:
            return (str(item["PK"]), str(item["SK"]))
        pk, sk = key_names(index)
        return (str(item[pk]), str(item[sk]), str(item["PK"]), str(item["SK"]))

    def _last_key_tuple(self, start: ItemKey, index: str | None) -> tuple[str, ...]:
        return self._order(start, index)

    def count(self, query: Query, stop_at: int | None = None) -> int:
        count = 0
        while True:
            page = self.query(query)
            count += len(page.items)
            if page.last is None or (stop_at is not None and count >= stop_at):
                return count
            query = replace(query, start=page.last)

    # --- transactions and batches ---------------------------------------------------------

    def transact(self, ops: Sequence[TxOp]) -> None:
        with self._lock:
            self.calls.append("transact")
            touched = [self._pk(op.item if isinstance(op, Put) else op.key) for op in ops]
            if len(set(touched)) != len(touched):
                # DynamoDB refuses a transaction naming one item twice (ValidationException,
                # TransactWriteItems API reference): so must the twin.
                raise ValueError("a transaction cannot include more than one operation on one item")
            reasons = []
            for op in ops:
                key = op.item if isinstance(op, Put) else op.key
                ok = self._check(self._find(self._pk_key(key)), op.condition)
                reasons.append("None" if ok else "ConditionalCheckFailed")
            if any(r != "None" for r in reasons):
                raise TransactionCancelled(reasons)
            for op in ops:
                if isinstance(op, Put):
                    self._items[self._pk(op.item)] = copy.deepcopy(op.item)
                elif isinstance(op, Change):
                    old = self._find(op.key)
                    self._items[self._pk(op.key)] = _apply(
                        old if old is not None else dict(op.key), op.update
                    )
                elif isinstance(op, Delete):
                    self._items.pop(self._pk(op.key), None)

    @staticmethod
    def _pk_key(item: Item | ItemKey) -> ItemKey:
        return {"PK": str(item["PK"]), "SK": str(item["SK"])}

    def batch_get(
        self,
        keys: Sequence[ItemKey],
        projection: Sequence[str] | None = None,
        *,
        complete: bool = False,  # nothing is ever left unprocessed here
    ) -> list[Item]:
        with self._lock:
            self.calls.append("batch_get")
            found = [self._find(k) for k in keys]
        return [_project(i, projection) for i in found if i is not None]

    def batch_delete(self, keys: Sequence[ItemKey]) -> None:
        with self._lock:
            self.calls.append("batch_delete")
            for key in keys:
                self._items.pop(self._pk(key), None)

    # --- for tests ------------------------------------------------------------------------

    def items(self) -> list[Item]:
        """Every item held, expired ones too (what a Scan would show)."""
        with self._lock:
            return [copy.deepcopy(i) for i in self._items.values()]


def _project(item: Item, projection: Sequence[str] | None) -> Item:
    if projection is None:
        return item
    return {name: item[name] for name in projection if name in item}


def _apply(item: Item, update: Update) -> Item:
    new = copy.deepcopy(item)
    for name, value in update.set.items():
        new[name] = copy.deepcopy(value)
    for name, value in update.set_if_absent.items():
        if name not in new:
            new[name] = copy.deepcopy(value)
    for name, value in update.add.items():
        if isinstance(value, set):
            new[name] = set(new.get(name, set())) | value
        else:
            new[name] = new.get(name, 0) + value
    for name, members in update.delete.items():
        if name in new:
            rest = set(new[name]) - members
            if rest:
                new[name] = rest
            else:
                del new[name]  # DynamoDB holds no empty sets: the attribute goes
    return new


def _returned(old: Item, new: Item, update: Update, returns: ReturnValues) -> Item | None:
    changed = {*update.set, *update.add, *update.delete, *update.set_if_absent}
    if returns == "NONE":
        return None
    if returns == "ALL_NEW":
        return new
    if returns == "ALL_OLD":
        return old
    source = new if returns == "UPDATED_NEW" else old
    return {k: v for k, v in source.items() if k in changed}


def _operand(value: Any, item: Item) -> Any:
    if isinstance(value, Size):
        got = item.get(value.name, _MISSING)
        return _MISSING if got is _MISSING else len(got)
    if isinstance(value, AttributeBase):
        return item.get(value.name, _MISSING)
    return value


def _evaluate(condition: ConditionBase, item: Item) -> bool:
    """A boto3 condition on ``item``, as DynamoDB evaluates it (a comparison with a missing
    attribute is false)."""
    expression = condition.get_expression()
    op = expression["operator"]
    values = expression["values"]
    if op == "AND":
        return _evaluate(values[0], item) and _evaluate(values[1], item)
    if op == "OR":
        return _evaluate(values[0], item) or _evaluate(values[1], item)
    if op == "NOT":
        return not _evaluate(values[0], item)
    if op == "attribute_exists":
        return values[0].name in item
    if op == "attribute_not_exists":
        return values[0].name not in item
    args = [_operand(v, item) for v in values]
    if any(a is _MISSING for a in args):
        return False
    left = args[0]
    match op:
        case "=":
            return bool(left == args[1])
        case "<>":
            return bool(left != args[1])
        case "<":
            return bool(left < args[1])
        case "<=":
            return bool(left <= args[1])
        case ">":
            return bool(left > args[1])
        case ">=":
            return bool(left >= args[1])
        case "BETWEEN":
            return bool(args[1] <= left <= args[2])
        case "IN":
            return left in args[1:]
        case "begins_with":
            return isinstance(left, str) and left.startswith(args[1])
        case "contains":
            return args[1] in left
    raise NotImplementedError(f"condition operator {op!r}")
