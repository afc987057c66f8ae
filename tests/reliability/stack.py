"""The switchboard app behind a started LocalGateway, as the reliability tests see it: its
accounts (handler errors) and its registry, read with a Scan."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_gateway import LocalGateway
from tests.gateways import dynamodb_client, poll, scan_items
from tests.reliability.applog import AppLog, CountingInvocationLog

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE = "switchboard-reliability-connections"


class StackUnderTest:
    """The switchboard app behind a started LocalGateway, with its accounts."""

    def __init__(self, gateway: LocalGateway, app_log: AppLog, dynamodb_url: str) -> None:
        self.gateway = gateway
        self.app_log = app_log
        self.dynamodb_url = dynamodb_url  # where the test scans: never through a fault proxy
        self.invocations: CountingInvocationLog = gateway.invocations  # type: ignore[assignment]

    @property
    def ws_url(self) -> str:
        assert self.gateway.urls is not None
        return self.gateway.urls.websocket

    @property
    def rest_url(self) -> str:
        assert self.gateway.urls is not None and self.gateway.urls.rest is not None
        return self.gateway.urls.rest

    def handler_errors(self) -> int:
        """Failed or timed-out handler invocations, and errors the app itself logged."""
        return self.invocations.counts["errors"] + self.app_log.handler_errors()

    def error_details(self) -> list[str]:
        return self.invocations.error_summary() + self.app_log.errors

    # -- the registry, as a test may read it (a Scan: the app never scans) --------------------

    def scan(self) -> list[dict[str, Any]]:
        assert self.gateway.table_name is not None
        client = dynamodb_client(self.dynamodb_url, self.gateway.region, self.gateway.credentials)
        return scan_items(client, self.gateway.table_name)

    def registry(self) -> TableSnapshot:
        return TableSnapshot.of(self.scan())

    def wait_for_disconnects(
        self, timeout: float = 30.0, keep: frozenset[str] | set[str] = frozenset()
    ) -> set[str]:
        """Wait until every connection that connected, but those in ``keep``, has had its
        ``$disconnect`` run; the ones still pending."""
        return poll(lambda: self.invocations.pending_disconnects() - keep, lambda p: not p, timeout)

    def wait_for_registry(self, predicate: Any, timeout: float = 30.0) -> TableSnapshot:
        return poll(self.registry, predicate, timeout, interval=0.1)


@dataclass
class TableSnapshot:
    """A Scan of the table, sorted into connection items, room memberships and presence."""

    connections: dict[str, dict[str, Any]] = field(default_factory=dict)
    memberships: set[tuple[str, str]] = field(default_factory=set)  # (room, connectionId)
    present: set[tuple[str, str]] = field(default_factory=set)  # (room, userId): presence items
    other: int = 0  # anything else but the message log: a leak
    log_items: int = 0  # the message log's streams (heads and messages): kept by design

    @classmethod
    def of(cls, items: list[dict[str, Any]]) -> TableSnapshot:
        registry = cls()
        slot_holders: list[str] = []
        for item in items:
            pk, sk = item["PK"]["S"], item["SK"]["S"]
            if pk.startswith("CONN#") and sk == "CONN":
                registry.connections[pk[5:]] = item
            elif pk.startswith("ROOM#") and sk.startswith("CONN#"):
                registry.memberships.add((pk[5:], sk[5:]))
            elif pk.startswith("ROOM#") and sk.startswith("USER#"):
                registry.present.add((pk[5:], sk[5:]))
            elif pk.startswith("USER#") and sk.startswith("SLOT#"):
                # A connection's per-user slot: part of that connection while it lives.
                slot_holders.append(item.get("connectionId", {}).get("S", ""))
            elif pk.startswith("STREAM#") or (pk.startswith("USER#") and sk == "LIMITS"):
                # The log, and a user's replay budget (kept with its own ttl, like the log).
                registry.log_items += 1
            else:
                registry.other += 1
        # A slot whose connection is gone is a leak.
        registry.other += sum(1 for c in slot_holders if c not in registry.connections)
        return registry

    @property
    def items(self) -> int:
        """Registry items (connections, memberships, presence, strays); not the message log."""
        return len(self.connections) + len(self.memberships) + len(self.present) + self.other

    def owners(self) -> set[str]:
        """Every connection id that has any item."""
        return set(self.connections) | {cid for _, cid in self.memberships}
