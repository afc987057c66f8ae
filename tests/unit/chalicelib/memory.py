"""The domain services over the in-memory table, for the unit tier (no moto, no sockets)."""

from __future__ import annotations

from typing import Any

from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from tests.conftest import Clock, make_switchboard
from tests.helpers import FakeGateway
from tests.memtable import MemoryTable

START = 1_795_608_000.0  # a whole second: clock steps land on exact microseconds


def table(clock: Clock, page_size: int = 2) -> MemoryTable:
    return MemoryTable(clock, page_size=page_size)


def registry(clock: Clock, shards: int = 4) -> Registry:
    return Registry(table(clock), ttl_seconds=7500, all_shards=shards)


def switchboard(clock: Clock, gateway: FakeGateway, **settings: Any) -> Switchboard:
    """A Switchboard wired as the functional tier wires it, on the in-memory table."""
    return make_switchboard(registry(clock), gateway, **settings)


def ms(clock: Clock) -> int:
    return int(clock.now * 1000)
