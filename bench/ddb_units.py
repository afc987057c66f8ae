"""What DynamoDB on-demand bills for one request: read and write request units from item sizes.

moto answers ``ReturnConsumedCapacity`` with flat figures, so the units here are computed the
way DynamoDB documents them, from the sizes of the items each request touched (read by
``bench/calls.py`` from the table before and after the request):

- item size: the lengths of attribute names plus values (strings in UTF-8 bytes, numbers about
  one byte per two significant digits plus one, sets and lists the sum of their members plus a
  byte or so each) - "Item sizes and formats",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html;
- reads, "Capacity unit consumption for read operations",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html
  (read 2026-12-06): a GetItem is its item's size rounded up to 4 KB, one unit per 4 KB when
  strongly consistent, half when eventually consistent; a BatchGetItem rounds each item up to
  4 KB on its own; a Query sums the sizes of every item it read (before the filter) and rounds
  the total up to 4 KB; a read that finds nothing still costs its minimum;
- writes, the same page's "Capacity unit consumption for write operations": one unit per 1 KB
  of the larger of the item before and after the write (a delete: the item deleted; a write
  whose condition fails: the item as it is, at least one unit); TransactWriteItems bills two
  units per 1 KB of each item;
- global secondary indexes, "Global secondary indexes: writes",
  https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/GSI.html#GSI.Writes: a table
  write that puts an item into an index, changes a projected attribute or removes it costs one
  more write on the index (of the index entry's size, 1 KB per unit); one that changes the
  index key costs two (a delete and a put). An index entry is the table's key, the index key
  and the projected attributes (plus 100 bytes of overhead, "Provisioned throughput
  considerations for global secondary indexes" on the same page).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

KB = 1024
READ_BLOCK = 4 * KB
INDEX_OVERHEAD = 100

AttributeValue = Mapping[str, Any]
RawItem = Mapping[str, AttributeValue]


def value_size(value: AttributeValue) -> int:
    """The size DynamoDB counts for one attribute value (DynamoDB JSON, e.g. ``{"S": "x"}``)."""
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(str(raw).encode("utf-8"))
    if kind == "B":
        return len(raw) if isinstance(raw, bytes | bytearray) else len(str(raw))
    if kind == "N":
        digits = str(Decimal(str(raw))).replace("-", "").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(v.encode("utf-8")) for v in raw)
    if kind == "NS":
        return sum(value_size({"N": v}) for v in raw)
    if kind == "BS":
        return sum(len(v) for v in raw)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in raw)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in raw.items())
    return len(str(raw))


def item_size(item: RawItem | None) -> int:
    """An item's size in bytes: every attribute name plus its value."""
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + value_size(v) for name, v in item.items())


def read_units(size: int, consistent: bool = False) -> float:
    """Read request units of one read of ``size`` bytes (at least one 4 KB block)."""
    blocks = max(1, math.ceil(size / READ_BLOCK))
    return blocks * (1.0 if consistent else 0.5)


def write_units(before: RawItem | None, after: RawItem | None) -> int:
    """Write request units of one standard write: the larger image, 1 KB per unit, at least 1."""
    return max(1, math.ceil(max(item_size(before), item_size(after)) / KB))


def index_entry(
    item: RawItem | None,
    index_keys: tuple[str, str],
    table_keys: tuple[str, str],
    projected: tuple[str, ...] | None,
) -> dict[str, AttributeValue] | None:
    """The entry ``item`` has in an index (None: the item is not in it, a sparse index)."""
    if not item or index_keys[0] not in item:
        return None
    names = set(index_keys) | set(table_keys)
    if projected is None:
        names |= set(item)
    else:
        names |= set(projected)
    return {name: item[name] for name in names if name in item}


def index_write_units(
    before: dict[str, Any] | None, after: dict[str, Any] | None, index_keys: tuple[str, str]
) -> int:
    """Write units one table write costs an index whose entries went ``before`` -> ``after``."""
    if before == after:
        return 0

    def units(entry: dict[str, Any]) -> int:
        return max(1, math.ceil((item_size(entry) + INDEX_OVERHEAD) / KB))

    if before is None:
        return units(after) if after else 0
    if after is None:
        return units(before)
    if any(before.get(k) != after.get(k) for k in index_keys):
        return units(before) + units(after)  # a delete and a put
    return units(after)
