"""The unit tier's in-memory table and its clock, shared by the domain services' tests."""

from __future__ import annotations

import pytest

from tests.conftest import Clock
from tests.memtable import MemoryTable
from tests.unit.chalicelib.memory import START


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def mem(clock: Clock) -> MemoryTable:
    """The table twin, paging every 2 items so that paths through ``LastEvaluatedKey`` run."""
    return MemoryTable(clock, page_size=2)
