"""What the registry's DynamoDB reads cost, measured from outside the registry.

The deployed registry asks DynamoDB for nothing it does not use, so it never requests
``ReturnConsumedCapacity``. The benchmarks hand it a ``StatsClient`` instead of the bare boto3
client (or build the switchboard from a ``StatsSession``): every Query then asks for its
consumed capacity, and the counts add up in ``ReadStats``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ReadStats:
    """What the registry's reads cost: items DynamoDB examined and read capacity consumed."""

    queries: int = 0
    items_examined: int = 0
    items_returned: int = 0
    capacity_units: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, response: dict[str, Any]) -> None:
        with self._lock:
            self.queries += 1
            self.items_examined += int(response.get("ScannedCount", response.get("Count", 0)))
            self.items_returned += int(response.get("Count", 0))
            self.capacity_units += float(
                response.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)
            )


class StatsClient:
    """A boto3 DynamoDB client whose Queries report their cost into ``stats``; every other
    attribute is the client's own."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.stats = ReadStats()

    def query(self, **params: Any) -> Any:
        response = self._client.query(ReturnConsumedCapacity="TOTAL", **params)
        self.stats.add(response)
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class StatsSession:
    """A boto3 session whose DynamoDB clients are ``StatsClient``s sharing one ``stats``."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.stats = ReadStats()

    def client(self, service_name: str, *args: Any, **kwargs: Any) -> Any:
        client = self._session.client(service_name, *args, **kwargs)
        if service_name != "dynamodb":
            return client
        wrapped = StatsClient(client)
        wrapped.stats = self.stats
        return wrapped

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
