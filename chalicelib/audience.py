"""Who a message goes to: one resumable read of a scope's connections.

``Audience.of(registry, scope, name)`` is the audience of a new fan-out (a user's
connections, a room's members, or everyone); a continuation job rebuilds one from what the
previous invocation had not reached (``Audience(registry, queries, targets)``). Either way it
is iterated by the broadcaster, and ``rest()`` says exactly what was not iterated: the
targets read but not yet handed out and the registry Queries still to page (``Sweep``). The
first invocation and the SQS continuation read the registry through this one class.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import assert_never

from chalicelib.protocol import Scope
from chalicelib.registry import QuerySpec, Registry, Target


def queries_for(registry: Registry, scope: Scope, name: str | None) -> list[QuerySpec]:
    """The registry Queries of a scope's audience; ``name`` is the user id or room (checking
    it, and the sender's right to reach it, is the caller's policy)."""
    match scope:
        case Scope.USER:
            return [registry.user_query(str(name))]
        case Scope.ROOM:
            return [registry.room_query(str(name))]
        case Scope.ALL:
            return registry.all_queries()
        case _:
            assert_never(scope)


class Audience:
    """Explicit targets first, then a registry sweep of ``queries``; ``rest()`` is exactly
    what was not iterated (the targets not yielded, and the sweep's own rest)."""

    def __init__(
        self, registry: Registry, queries: list[QuerySpec], targets: Iterable[Target] = ()
    ) -> None:
        self._targets = deque(targets)
        self._sweep = registry.sweep(queries)

    @classmethod
    def of(cls, registry: Registry, scope: Scope, name: str | None) -> Audience:
        """The whole audience of a new message to ``scope``/``name``, read lazily."""
        return cls(registry, queries_for(registry, scope, name))

    def start(self) -> None:
        """Start reading the registry now, before the caller iterates (``Sweep.start``)."""
        self._sweep.start()

    def __iter__(self) -> Iterator[Target]:
        while self._targets:
            yield self._targets.popleft()
        yield from self._sweep

    def rest(self) -> tuple[list[Target], list[QuerySpec]]:
        read, queries = self._sweep.rest()  # an unstarted sweep: nothing read, every Query
        return list(self._targets) + read, queries
