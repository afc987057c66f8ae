"""The connections table definition, loaded from schema.json (its one source).

The registry reads its TTL attribute here; the deploy tooling (deploy/create_table.py,
deploy/template.py) builds the table from the same definition.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from typing import Any

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.json")


@lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return {k: v for k, v in data.items() if not k.startswith("_")}


def load_schema() -> dict[str, Any]:
    """Return a deep copy of the schema (callers may mutate it)."""
    return copy.deepcopy(_load())


def ttl_attribute() -> str:
    return str(_load()["TimeToLiveAttribute"])
