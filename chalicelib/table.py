"""The table layer: the one owner of the DynamoDB client, item encoding, paging and the clock.

Domain services (registry, presence storage, limits, the send ledger, the message log) speak to
the one table through the ``Table`` interface below in plain Python values (``str``, ``int``,
``bool``, ``set[str]``), with keys from ``chalicelib.keys`` and conditions written with boto3's
condition builder (``boto3.dynamodb.conditions.Attr``). ``DynamoTable`` is the real thing over
a low-level boto3 client: it alone encodes and decodes attribute values (boto3's
``TypeSerializer``/``TypeDeserializer``), builds expressions, pages Queries through
``LastEvaluatedKey`` and turns DynamoDB's refusals into typed errors:

- ``ConditionFailed`` for a conditional write whose condition did not hold, carrying the item
  as it was when DynamoDB returned it (``ReturnValuesOnConditionCheckFailure=ALL_OLD``; see
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_UpdateItem.html, botocore
  puts it in the error's ``Item``) and whether botocore had resent the request;
- ``TransactionCancelled`` with the reason code of each item (``CancellationReasons`` in
  https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html,
  ``"None"`` for an item that was fine);
- ``UnprocessedItems`` when a batch write still has items left after its retries.

Other DynamoDB and botocore errors (throttling, timeouts) propagate as botocore raised them:
their callers decide whether to fail open.

The clock lives here too: ``now()`` is what every ``ttl`` is compared with (DynamoDB's TTL
deletes expired items only eventually, so a live read filters ``ttl > now``), and every domain
service over one table reads time from it, so a test that moves one clock moves them all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal, Protocol

from boto3.dynamodb.conditions import Attr, ConditionBase, ConditionExpressionBuilder, Key
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from chalicelib.keys import TTL

Item = dict[str, Any]
ItemKey = dict[str, str]
ReturnValues = Literal["NONE", "ALL_OLD", "ALL_NEW", "UPDATED_OLD", "UPDATED_NEW"]

# BatchWriteItem takes at most 25 requests, BatchGetItem at most 100 keys (DynamoDB API
# reference, BatchWriteItem and BatchGetItem).
BATCH_WRITE_MAX = 25
BATCH_GET_MAX = 100
_BATCH_ATTEMPTS = 8

# The key attributes of the table and of each index (schema.json).
_KEY_NAMES: dict[str | None, tuple[str, str]] = {
    None: ("PK", "SK"),
    "GSI1": ("GSI1PK", "GSI1SK"),
    "GSI2": ("GSI2PK", "GSI2SK"),
}


class TableError(Exception):
    """A table operation DynamoDB refused in a way its caller is expected to handle."""


class ConditionFailed(TableError):
    """A conditional write's condition did not hold; nothing was written.

    ``old`` is the item as it was (when the write asked for it and DynamoDB returned it; None
    otherwise, or when there was no item); ``retried`` is True when botocore had sent the
    request more than once (a first attempt may have been applied, its answer lost)."""

    def __init__(self, old: Item | None = None, retried: bool = False) -> None:
        super().__init__("the condition of the write did not hold")
        self.old = old
        self.retried = retried


class TransactionCancelled(TableError):
    """A transaction was cancelled; ``reasons`` holds one code per item in request order
    (``"None"``, ``"ConditionalCheckFailed"``, ``"TransactionConflict"`` ...)."""

    def __init__(self, reasons: Sequence[str]) -> None:
        super().__init__(f"transaction cancelled: {', '.join(reasons)}")
        self.reasons = list(reasons)


class UnprocessedItems(TableError):
    """A batch write left items unprocessed after its retries."""


@dataclass(frozen=True)
class Update:
    """An update expression: ``SET`` attributes to values, ``ADD`` numbers (increments) or
    members to sets, ``DELETE`` members from sets; ``set_if_absent`` sets an attribute only
    where the item has none (``SET #a = if_not_exists(#a, :v)``). Each attribute appears in
    one clause."""

    set: Mapping[str, Any] = field(default_factory=dict)
    add: Mapping[str, Any] = field(default_factory=dict)
    delete: Mapping[str, AbstractSet[str]] = field(default_factory=dict)
    set_if_absent: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Query:
    """One Query: the items of a ``partition`` of the table or of an ``index``, optionally
    narrowed by sort key (a prefix or an inclusive range), filtered, projected.

    ``live`` adds the table's convention ``ttl > now``. ``limit`` is DynamoDB's: items read
    per page *before* the filter. ``start`` resumes after a page's ``last`` key.
    ``descending`` reads in descending sort key order (``ScanIndexForward=False``)."""

    partition: str
    index: str | None = None
    sk_prefix: str | None = None
    sk_between: tuple[str, str] | None = None
    filter: ConditionBase | None = None
    live: bool = False
    projection: tuple[str, ...] | None = None
    limit: int | None = None
    start: ItemKey | None = None
    descending: bool = False


@dataclass(frozen=True)
class Page:
    """One page of a Query: its items and where the next page starts (None: the last page)."""

    items: list[Item]
    last: ItemKey | None = None


@dataclass(frozen=True)
class Put:
    item: Item
    condition: ConditionBase | None = None


@dataclass(frozen=True)
class Change:
    key: ItemKey
    update: Update
    condition: ConditionBase | None = None


@dataclass(frozen=True)
class Delete:
    key: ItemKey
    condition: ConditionBase | None = None


TxOp = Put | Change | Delete


class Table(Protocol):
    """The operations the domain services use. ``DynamoDB`` implements them on DynamoDB; the
    tests' in-memory twin implements the same, and one contract test runs on both."""

    def now(self) -> float:
        """The clock (epoch seconds) that ttl, token expiry and rate limits are read against."""
        ...

    def get(
        self, key: ItemKey, *, consistent: bool = False, projection: Sequence[str] | None = None
    ) -> Item | None: ...

    def put(
        self, item: Item, *, condition: ConditionBase | None = None, old_on_failure: bool = False
    ) -> None:
        """Raises ``ConditionFailed`` (with ``old`` when ``old_on_failure``)."""
        ...

    def update(
        self,
        key: ItemKey,
        update: Update,
        *,
        condition: ConditionBase | None = None,
        returns: ReturnValues = "NONE",
        old_on_failure: bool = False,
    ) -> Item | None:
        """The attributes ``returns`` asks for (None for ``NONE``); raises ``ConditionFailed``."""
        ...

    def delete(
        self, key: ItemKey, *, condition: ConditionBase | None = None, return_old: bool = False
    ) -> Item | None:
        """The deleted item with ``return_old`` (None if there was none)."""
        ...

    def query(self, query: Query) -> Page: ...

    def count(self, query: Query, stop_at: int | None = None) -> int:
        """How many items ``query`` matches (after its filter), paging; stops paging once the
        count reaches ``stop_at``."""
        ...

    def transact(self, ops: Sequence[TxOp]) -> None:
        """All of ``ops`` or none; raises ``TransactionCancelled``."""
        ...

    def batch_get(
        self,
        keys: Sequence[ItemKey],
        projection: Sequence[str] | None = None,
        *,
        complete: bool = False,
    ) -> list[Item]:
        """The items found, in no particular order. Keys DynamoDB leaves unprocessed after the
        retries are left out, or with ``complete`` raise ``UnprocessedItems`` (a caller that
        must tell a missing item from an unread one)."""
        ...

    def batch_delete(self, keys: Sequence[ItemKey]) -> None:
        """Raises ``UnprocessedItems`` when deletes are left after the retries."""
        ...


def query_all(table: Table, query: Query) -> Iterator[Item]:
    """Every item of ``query``, page by page as the caller iterates (``LastEvaluatedKey``)."""
    while True:
        page = table.query(query)
        yield from page.items
        if page.last is None:
            return
        query = replace(query, start=page.last)


def live(item: Mapping[str, Any], now: float) -> bool:
    """The table's TTL convention: an item counts while ``ttl > now`` (TTL deletes lazily)."""
    return int(item.get(TTL, 0)) > int(now)


def key_names(index: str | None) -> tuple[str, str]:
    """The partition and sort key attributes of the table (None) or of an index."""
    try:
        return _KEY_NAMES[index]
    except KeyError:
        raise ValueError(f"unknown index {index!r}") from None


def live_filter(query: Query, now: float) -> ConditionBase | None:
    """The filter ``query`` runs with: its own, and ``ttl > now`` when it asks for live items."""
    condition = query.filter
    if query.live:
        ttl = Attr(TTL).gt(int(now))
        condition = ttl if condition is None else ttl & condition
    return condition


def key_condition(query: Query) -> ConditionBase:
    pk, sk = key_names(query.index)
    condition: ConditionBase = Key(pk).eq(query.partition)
    if query.sk_prefix is not None:
        condition = condition & Key(sk).begins_with(query.sk_prefix)
    if query.sk_between is not None:
        condition = condition & Key(sk).between(*query.sk_between)
    return condition


class DynamoDB:
    """``Table`` over a low-level boto3 DynamoDB client and one table name."""

    def __init__(
        self,
        client: Any,
        table_name: str,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._ddb = client
        self._name = table_name
        self._clock = clock
        self._sleep = sleep
        self._serializer = TypeSerializer()
        self._deserializer = TypeDeserializer()

    @property
    def name(self) -> str:
        return self._name

    def now(self) -> float:
        return float(self._clock())

    # --- encoding -------------------------------------------------------------------------

    def _encode(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: self._serializer.serialize(value) for name, value in item.items()}

    def _decode(self, item: Mapping[str, Any]) -> Item:
        return {name: _plain(self._deserializer.deserialize(v)) for name, v in item.items()}

    def _expression(
        self, params: dict[str, Any], names: Mapping[str, str], values: Mapping[str, Any]
    ) -> None:
        if names:
            params.setdefault("ExpressionAttributeNames", {}).update(names)
        if values:
            params.setdefault("ExpressionAttributeValues", {}).update(self._encode(values))

    def _condition(
        self, params: dict[str, Any], builder: ConditionExpressionBuilder, condition: Any
    ) -> None:
        if condition is not None:
            built = builder.build_expression(condition)
            params["ConditionExpression"] = built.condition_expression
            self._expression(
                params, built.attribute_name_placeholders, built.attribute_value_placeholders
            )

    def _projection(self, params: dict[str, Any], projection: Sequence[str] | None) -> None:
        if projection:
            names = {f"#p{i}": name for i, name in enumerate(projection)}
            params["ProjectionExpression"] = ", ".join(names)
            self._expression(params, names, {})

    def _update_expression(self, params: dict[str, Any], update: Update) -> None:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        clauses: list[str] = []
        for verb, pairs, sep in (
            ("SET", update.set, " = "),
            ("ADD", update.add, " "),
            ("DELETE", update.delete, " "),
        ):
            parts = []
            for name, value in pairs.items():
                n, v = f"#u{len(names)}", f":u{len(values)}"
                names[n], values[v] = name, value
                parts.append(f"{n}{sep}{v}")
            if verb == "SET":
                for name, value in update.set_if_absent.items():
                    n, v = f"#u{len(names)}", f":u{len(values)}"
                    names[n], values[v] = name, value
                    parts.append(f"{n} = if_not_exists({n}, {v})")
            if parts:
                clauses.append(f"{verb} {', '.join(parts)}")
        params["UpdateExpression"] = " ".join(clauses)
        self._expression(params, names, values)

    def _failed(self, exc: Exception) -> ConditionFailed:
        response: dict[str, Any] = getattr(exc, "response", {}) or {}
        old = response.get("Item")
        retried = response.get("ResponseMetadata", {}).get("RetryAttempts", 0) > 0
        return ConditionFailed(self._decode(old) if old else None, bool(retried))

    # --- single items ---------------------------------------------------------------------

    def get(
        self, key: ItemKey, *, consistent: bool = False, projection: Sequence[str] | None = None
    ) -> Item | None:
        params: dict[str, Any] = {"TableName": self._name, "Key": self._encode(key)}
        if consistent:
            params["ConsistentRead"] = True
        self._projection(params, projection)
        item = self._ddb.get_item(**params).get("Item")
        return self._decode(item) if item else None

    def put(
        self, item: Item, *, condition: ConditionBase | None = None, old_on_failure: bool = False
    ) -> None:
        params: dict[str, Any] = {"TableName": self._name, "Item": self._encode(item)}
        self._condition(params, ConditionExpressionBuilder(), condition)
        if old_on_failure:
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            self._ddb.put_item(**params)
        except self._ddb.exceptions.ConditionalCheckFailedException as exc:
            raise self._failed(exc) from None

    def update(
        self,
        key: ItemKey,
        update: Update,
        *,
        condition: ConditionBase | None = None,
        returns: ReturnValues = "NONE",
        old_on_failure: bool = False,
    ) -> Item | None:
        params: dict[str, Any] = {"TableName": self._name, "Key": self._encode(key)}
        self._update_expression(params, update)
        self._condition(params, ConditionExpressionBuilder(), condition)
        if returns != "NONE":
            params["ReturnValues"] = returns
        if old_on_failure:
            params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            response = self._ddb.update_item(**params)
        except self._ddb.exceptions.ConditionalCheckFailedException as exc:
            raise self._failed(exc) from None
        if returns == "NONE":
            return None
        return self._decode(response.get("Attributes") or {})

    def delete(
        self, key: ItemKey, *, condition: ConditionBase | None = None, return_old: bool = False
    ) -> Item | None:
        params: dict[str, Any] = {"TableName": self._name, "Key": self._encode(key)}
        self._condition(params, ConditionExpressionBuilder(), condition)
        if return_old:
            params["ReturnValues"] = "ALL_OLD"
        try:
            response = self._ddb.delete_item(**params)
        except self._ddb.exceptions.ConditionalCheckFailedException as exc:
            raise self._failed(exc) from None
        old = response.get("Attributes")
        return self._decode(old) if old else None

    # --- queries --------------------------------------------------------------------------

    def _query_params(self, query: Query) -> dict[str, Any]:
        builder = ConditionExpressionBuilder()
        params: dict[str, Any] = {"TableName": self._name}
        built = builder.build_expression(key_condition(query), is_key_condition=True)
        params["KeyConditionExpression"] = built.condition_expression
        self._expression(
            params, built.attribute_name_placeholders, built.attribute_value_placeholders
        )
        condition = live_filter(query, self.now())
        if condition is not None:
            built = builder.build_expression(condition)
            params["FilterExpression"] = built.condition_expression
            self._expression(
                params, built.attribute_name_placeholders, built.attribute_value_placeholders
            )
        self._projection(params, query.projection)
        if query.index is not None:
            params["IndexName"] = query.index
        if query.limit is not None:
            params["Limit"] = query.limit
        if query.start:
            params["ExclusiveStartKey"] = self._encode(query.start)
        if query.descending:
            params["ScanIndexForward"] = False
        return params

    def query(self, query: Query) -> Page:
        response = self._ddb.query(**self._query_params(query))
        last = response.get("LastEvaluatedKey")
        items = [self._decode(item) for item in response.get("Items", [])]
        return Page(items, {k: str(v) for k, v in self._decode(last).items()} if last else None)

    def count(self, query: Query, stop_at: int | None = None) -> int:
        params = self._query_params(query)
        params["Select"] = "COUNT"
        params.pop("ProjectionExpression", None)
        count = 0
        while True:
            response = self._ddb.query(**params)
            count += int(response.get("Count", 0))  # after the filter
            last = response.get("LastEvaluatedKey")
            if not last or (stop_at is not None and count >= stop_at):
                return count
            params["ExclusiveStartKey"] = last

    # --- transactions and batches ---------------------------------------------------------

    def _tx_item(self, op: TxOp) -> dict[str, Any]:
        params: dict[str, Any] = {"TableName": self._name}
        if isinstance(op, Put):
            params["Item"] = self._encode(op.item)
            verb = "Put"
        elif isinstance(op, Change):
            params["Key"] = self._encode(op.key)
            self._update_expression(params, op.update)
            verb = "Update"
        else:
            params["Key"] = self._encode(op.key)
            verb = "Delete"
        self._condition(params, ConditionExpressionBuilder(), op.condition)
        return {verb: params}

    def transact(self, ops: Sequence[TxOp]) -> None:
        try:
            self._ddb.transact_write_items(TransactItems=[self._tx_item(op) for op in ops])
        except self._ddb.exceptions.TransactionCanceledException as exc:
            reasons = getattr(exc, "response", {}).get("CancellationReasons") or []
            raise TransactionCancelled([str(r.get("Code", "None")) for r in reasons]) from None

    def batch_get(
        self,
        keys: Sequence[ItemKey],
        projection: Sequence[str] | None = None,
        *,
        complete: bool = False,
    ) -> list[Item]:
        items: list[Item] = []
        for start in range(0, len(keys), BATCH_GET_MAX):
            request: dict[str, Any] = {
                "Keys": [self._encode(k) for k in keys[start : start + BATCH_GET_MAX]]
            }
            self._projection(request, projection)
            pending: dict[str, Any] = {self._name: request}
            for attempt in range(_BATCH_ATTEMPTS):
                response = self._ddb.batch_get_item(RequestItems=pending)
                items.extend(
                    self._decode(i) for i in response.get("Responses", {}).get(self._name, [])
                )
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
                self._sleep(min(0.05 * 2**attempt, 1.0))
            else:
                if complete:
                    left = len(pending.get(self._name, {}).get("Keys", []))
                    raise UnprocessedItems(f"{left} keys left unprocessed after retries")
        return items

    def batch_delete(self, keys: Sequence[ItemKey]) -> None:
        for start in range(0, len(keys), BATCH_WRITE_MAX):
            requests: list[dict[str, Any]] = [
                {"DeleteRequest": {"Key": self._encode(k)}}
                for k in keys[start : start + BATCH_WRITE_MAX]
            ]
            for attempt in range(_BATCH_ATTEMPTS):
                response = self._ddb.batch_write_item(RequestItems={self._name: requests})
                requests = response.get("UnprocessedItems", {}).get(self._name, [])
                if not requests:
                    break
                self._sleep(min(0.05 * 2**attempt, 1.0))
            else:
                raise UnprocessedItems(f"{len(requests)} deletes left unprocessed after retries")


def _plain(value: Any) -> Any:
    """A deserialized attribute as plain Python: DynamoDB numbers come back as ``Decimal``;
    every number this table stores is an integer."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, set):
        return {_plain(v) for v in value}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
