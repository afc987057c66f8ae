"""Registry cost: what one send reads, against the seed's Scan, as the table grows.

The table (moto, in this process) holds, for ``live`` live connections:

- ``live`` live connection items of ``live / 2`` users (two connections each), each in two rooms;
- ``live / 2`` *expired* connection items (``ttl`` passed; DynamoDB's TTL deletes them only
  eventually, so they are still there and still in the indexes);
- ``live / 4`` *stale* connection items (closed sockets whose ``$disconnect`` never ran; their
  ``ttl`` is ahead, so nothing but a 410 can tell them from live ones);
- ``2 * live`` room membership items (``ROOM#<room>`` partitions);

plus one target user with two live and two expired connections. Items are made by the real
``Registry.register`` / ``Registry.join`` code (captured, then batch-written).

Per table size it measures a targeted send (``Registry.user_connections``, what
``sendMessage`` reads), a broadcast (``Registry.all_connections``) and the seed's
``Scan(ProjectionExpression=PK)``: requests, items examined (``ScannedCount``), items
returned, moto's reported ``ConsumedCapacity`` and the read capacity DynamoDB would charge
(modelled: the examined items' sizes, rounded up to 4 KB per request, 0.5 RCU per 4 KB for
eventually consistent reads; index items count their projected attributes only).
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

from bench.common import REGION, median
from local_gateway import moto_speedups

TABLE = "bench-connections"
SHARDS = 8
INDEX_ATTRS = {
    "GSI1": ("GSI1PK", "GSI1SK", "PK", "SK", "connectionId", "userId", "ttl", "endpoint"),
    "GSI2": ("GSI2PK", "GSI2SK", "PK", "SK", "connectionId", "userId", "ttl", "endpoint"),
}


class _Capture:
    """Stands in for the DynamoDB client while the registry writes: keeps the items."""

    class exceptions:  # noqa: N801 - mirrors boto3's client.exceptions
        class ConditionalCheckFailedException(Exception):
            pass

        class TransactionCanceledException(Exception):
            pass

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.rooms: dict[str, list[str]] = defaultdict(list)

    def put_item(self, **kwargs: Any) -> None:
        self.items.append(kwargs["Item"])

    def transact_write_items(self, TransactItems: list[dict[str, Any]]) -> None:  # noqa: N803
        for op in TransactItems:
            if "Put" in op:
                self.items.append(op["Put"]["Item"])
            elif "Update" in op:
                key = op["Update"]["Key"]["PK"]["S"]
                # The one value of the registry's "ADD rooms" update: the room joined.
                (added,) = op["Update"]["ExpressionAttributeValues"].values()
                self.rooms[key] += added["SS"]


def build_items(live: int, now: float) -> list[dict[str, Any]]:
    from chalicelib.registry import Registry
    from chalicelib.table import DynamoDB

    capture = _Capture()
    table = DynamoDB(capture, TABLE, clock=lambda: now)
    registry = Registry(table, ttl_seconds=7500, all_shards=SHARDS)
    endpoint = "https://abc123.execute-api.us-east-1.amazonaws.com/api"
    now_ms = int(now * 1000)
    rooms = max(2, live // 50)

    def connect(cid: str, user: str, age_s: float, room_list: list[str]) -> None:
        conn = registry.register(cid, user, now_ms - int(age_s * 1000), endpoint=endpoint)
        for room in room_list:
            registry.join(conn, room)

    for i in range(live):
        connect(
            f"L{i:07d}AAAAAA=", f"u_{i // 2}", 60, [f"room{i % rooms}", f"room{(i + 1) % rooms}"]
        )
    for i in range(live // 2):  # connected 3 h ago: past the 2 h + margin ttl
        connect(f"E{i:07d}AAAAAA=", f"u_{i}", 3 * 3600, [])
    for i in range(live // 4):  # connected 1 h ago, socket gone, $disconnect missed
        connect(f"S{i:07d}AAAAAA=", f"u_{i}", 3600, [])
    for i in range(2):
        connect(f"T{i:07d}AAAAAA=", "u_target", 60, ["room0"])
        connect(f"X{i:07d}AAAAAA=", "u_target", 3 * 3600, [])
    for item in capture.items:
        rooms_of = capture.rooms.get(item["PK"]["S"])
        if rooms_of and item["SK"]["S"] == "CONN":
            item["rooms"] = {"SS": sorted(set(rooms_of))}
    return capture.items


def _value_size(value: dict[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "S":
        return len(raw.encode("utf-8"))
    if kind == "N":
        digits = len(str(Decimal(raw)).replace("-", "").replace(".", "").lstrip("0")) or 1
        return math.ceil(digits / 2) + 1
    if kind == "SS":
        return sum(len(v.encode("utf-8")) for v in raw)
    return len(str(raw))


def item_size(item: dict[str, Any], attributes: tuple[str, ...] | None = None) -> int:
    """DynamoDB's item size: attribute names plus values (of the projected attributes)."""
    return sum(
        len(name.encode("utf-8")) + _value_size(value)
        for name, value in item.items()
        if attributes is None or name in attributes
    )


def modelled_rcu(sizes: list[int]) -> float:
    """Eventually consistent Query/Scan: 0.5 RCU per started 4 KB of examined items, per
    1 MB page."""
    total = 0.0
    page = 0
    for size in sizes:
        if page + size > 1_000_000:
            total += math.ceil(page / 4096) * 0.5
            page = 0
        page += size
    return total + math.ceil(page / 4096) * 0.5 if page else total + 0.5


def _load(client: Any, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
        pending: dict[str, Any] = {TABLE: requests}
        for _ in range(10):
            response = client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                break


def _seed_scan(client: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "TableName": TABLE,
        "ProjectionExpression": "PK",
        "ReturnConsumedCapacity": "TOTAL",
    }
    out = {"requests": 0, "examined": 0, "returned": 0, "moto_capacity": 0.0, "targets": 0}
    while True:
        page = client.scan(**params)
        out["requests"] += 1
        out["examined"] += page["ScannedCount"]
        out["returned"] += page["Count"]
        out["moto_capacity"] += page.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)
        out["targets"] += sum(1 for i in page["Items"] if i["PK"]["S"].startswith("CONN#"))
        if not page.get("LastEvaluatedKey"):
            return out
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _timed(fn: Any, reps: int) -> tuple[Any, float]:
    result = None
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return result, median(times)


def _read(stats: Any, fn: Any) -> dict[str, Any]:
    before = (stats.queries, stats.items_examined, stats.items_returned, stats.capacity_units)
    targets = sum(1 for _ in fn())
    return {
        "targets": targets,
        "requests": stats.queries - before[0],
        "examined": stats.items_examined - before[1],
        "returned": stats.items_returned - before[2],
        "moto_capacity": round(stats.capacity_units - before[3], 2),
    }


def _answers(registry: Any) -> tuple[list[Any], list[Any]]:
    return (
        sorted(registry.all_connections(), key=lambda t: t.connection_id),
        sorted(registry.user_connections("u_target"), key=lambda t: t.connection_id),
    )


def _one_size(live: int, reps: int, check: bool) -> tuple[dict[str, Any], bool | None]:
    import boto3
    from moto import mock_aws

    from bench.readstats import StatsClient
    from chalicelib.registry import Registry
    from chalicelib.table import DynamoDB
    from deploy.create_table import create_table

    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client, TABLE)
        now = time.time()
        items = build_items(live, now)
        started = time.perf_counter()
        _load(client, items)
        load_s = time.perf_counter() - started
        reads = StatsClient(client)
        registry = Registry(DynamoDB(reads, TABLE, clock=lambda: now), all_shards=SHARDS)
        by_user: dict[str, list[int]] = defaultdict(list)
        by_shard: dict[str, list[int]] = defaultdict(list)
        for item in items:
            if "GSI1PK" in item:
                by_user[item["GSI1PK"]["S"]].append(item_size(item, INDEX_ATTRS["GSI1"]))
                by_shard[item["GSI2PK"]["S"]].append(item_size(item, INDEX_ATTRS["GSI2"]))
        user, user_s = _timed(
            lambda: _read(reads.stats, lambda: registry.user_connections("u_target")), reps
        )
        user["rcu"] = modelled_rcu(by_user["USER#u_target"])
        everyone, everyone_s = _timed(lambda: _read(reads.stats, registry.all_connections), reps)
        everyone["rcu"] = sum(modelled_rcu(sizes) for sizes in by_shard.values())
        scan, scan_s = _timed(lambda: _seed_scan(client), reps)
        scan["rcu"] = modelled_rcu([item_size(item) for item in items])
        same: bool | None = None
        if check:  # the partition-only Query gives moto's own answers
            fast = _answers(registry)
            moto_speedups.enabled = False
            try:
                same = fast == _answers(registry)
            finally:
                moto_speedups.enabled = True
    row = {
        "live": live,
        "table_items": len(items),
        "load_s": round(load_s, 2),
        "send_user": {**user, "ms": round(user_s * 1000, 2)},
        "broadcast": {**everyone, "ms": round(everyone_s * 1000, 2)},
        "seed_scan": {**scan, "ms": round(scan_s * 1000, 2)},
    }
    return row, same


def measure(sizes: list[int], reps: int = 3, progress: Any = print) -> dict[str, Any]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
    moto_speedups.install()
    rows = []
    checks = []
    for live in sizes:
        row, same = _one_size(live, reps, check=live == sizes[0])
        if same is not None:
            checks.append({"live": live, "same_answers_as_moto": same})
        rows.append(row)
        user, everyone, scan = row["send_user"], row["broadcast"], row["seed_scan"]
        progress(
            f"  table {row['table_items']:>6} items: sendMessage examines {user['examined']} "
            f"({user['rcu']} RCU), broadcastAll {everyone['examined']} "
            f"({everyone['rcu']} RCU), seed Scan {scan['examined']} ({scan['rcu']} RCU)"
        )
    return {"rows": rows, "checks": checks, "shards": SHARDS}
