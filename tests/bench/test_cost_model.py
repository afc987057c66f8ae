"""The arithmetic behind bench/cost.py and bench/ddb_units.py: DynamoDB's documented rounding and
the price lines a workload adds up to (no AWS, no socket)."""

from __future__ import annotations

import pytest

from bench import cost, ddb_units


def test_item_sizes_count_names_and_values() -> None:
    item = {"PK": {"S": "CONN#abc"}, "ttl": {"N": "1795608005"}, "rooms": {"SS": ["a", "bc"]}}
    # "PK" + 8, "ttl" + 10 significant digits / 2 + 1 (zeros at either end are trimmed), "rooms" + 3
    assert ddb_units.item_size(item) == (2 + 8) + (3 + 6) + (5 + 3)


def test_reads_round_up_to_4_kb_and_writes_to_1_kb() -> None:
    assert ddb_units.read_units(3500) == 0.5  # eventually consistent, one 4 KB block
    assert ddb_units.read_units(3500, consistent=True) == 1.0
    assert ddb_units.read_units(0) == 0.5  # a read that finds nothing still costs its minimum
    assert ddb_units.read_units(8193) == 1.5
    small = {"PK": {"S": "x" * 100}}
    big = {"PK": {"S": "x" * 1100}}
    assert ddb_units.write_units(None, small) == 1
    assert ddb_units.write_units(big, small) == 2  # the larger image counts


def test_an_index_key_change_costs_a_delete_and_a_put() -> None:
    keys = ("GSI1PK", "GSI1SK")
    old = {"GSI1PK": {"S": "USER#a"}, "GSI1SK": {"S": "CONN#1"}}
    new = {"GSI1PK": {"S": "USER#b"}, "GSI1SK": {"S": "CONN#1"}}
    assert ddb_units.index_write_units(old, new, keys) == 2
    assert ddb_units.index_write_units(None, new, keys) == 1
    assert ddb_units.index_write_units(new, new, keys) == 0
    assert ddb_units.index_entry({"PK": {"S": "p"}}, keys, ("PK", "SK"), ()) is None  # sparse


def test_a_workload_is_the_sum_of_its_lines() -> None:
    send = cost.Action(rru=0.5, wru=3.0, sequential_calls=3, cpu_ms=2.0, log_bytes=800)
    ping = cost.Action(rru=0.0, wru=1.0, sequential_calls=1, cpu_ms=0.5, log_bytes=300)
    workload = cost.WORKLOADS[0]  # 1:1 chat: one recipient, one connection minute a message
    lines = cost.switchboard(workload, {"send": send, "ping": ping}, 1024, "arm64", 0.2)
    pings = workload.connection_minutes_per_message * cost.KEEPALIVE_PER_MINUTE
    assert lines.items["API Gateway messages"] == pytest.approx((2 + 1 + 2 * pings) * 1.00)
    assert lines.items["API Gateway connection minutes"] == pytest.approx(0.25)
    dynamodb = (3.0 + pings * 1.0) * 0.625 + 0.5 * 0.125
    assert lines.items["DynamoDB"] == pytest.approx(dynamodb)
    assert lines.total == pytest.approx(sum(lines.items.values()))
    # arm64 bills less for the same duration; the memory size stretches the CPU part only.
    x86 = cost.switchboard(workload, {"send": send, "ping": ping}, 1024, "x86_64", 0.2)
    assert lines.total < x86.total
    assert cost.duration_ms(send, 1769) == pytest.approx(2.0 + 3 * cost.DDB_MS + 2 * cost.POST_MS)
    assert cost.duration_ms(send, 512) > cost.duration_ms(send, 1024)


def test_every_price_names_its_page() -> None:
    for price in cost.PRICES.values():
        assert price.page.startswith("https://aws.amazon.com/") and price.usd > 0
