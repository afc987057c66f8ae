"""The connections table definition, loaded from schema.json (its one source)."""

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


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """Arguments for DynamoDB ``CreateTable`` built from the schema."""
    schema = load_schema()
    schema.pop("TimeToLiveAttribute")
    return {"TableName": table_name, **schema}


def create_table(client: Any, table_name: str, wait: bool = True) -> bool:
    """Create the table (and enable TTL) if it does not exist. Returns True if created."""
    try:
        client.describe_table(TableName=table_name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(**create_table_kwargs(table_name))
    if wait:
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute()},
    )
    return True
