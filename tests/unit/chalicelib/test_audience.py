"""Audience: one resumable read of a scope's connections (explicit targets, then a sweep)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from chalicelib.audience import Audience, queries_for
from chalicelib.protocol import Scope
from chalicelib.registry import Target


class Sweep:
    def __init__(self, queries: list[Any]) -> None:
        self.queries = queries
        self.targets = [Target(f"s{n}") for n in range(4)]
        self.yielded = 0

    def __iter__(self) -> Iterator[Target]:
        for target in self.targets:
            self.yielded += 1
            yield target

    def rest(self) -> tuple[list[Target], list[Any]]:
        return self.targets[self.yielded :], ["unfinished"] if self.yielded < 4 else []


class Registry:
    def __init__(self) -> None:
        self.sweeps: list[Sweep] = []

    def user_query(self, user: str) -> tuple[str, str]:
        return ("user", user)

    def room_query(self, room: str) -> tuple[str, str]:
        return ("room", room)

    def all_queries(self) -> list[tuple[str, int]]:
        return [("all", 0), ("all", 1)]

    def sweep(self, queries: list[Any]) -> Sweep:
        self.sweeps.append(Sweep(queries))
        return self.sweeps[-1]


def test_each_scope_reads_its_own_queries() -> None:
    registry: Any = Registry()
    assert queries_for(registry, Scope.USER, "u1") == [("user", "u1")]
    assert queries_for(registry, Scope.ROOM, "lobby") == [("room", "lobby")]
    assert queries_for(registry, Scope.ALL, None) == [("all", 0), ("all", 1)]
    Audience.of(registry, Scope.ROOM, "lobby")
    assert registry.sweeps[-1].queries == [("room", "lobby")]


def test_rest_is_exactly_what_was_not_iterated() -> None:
    registry: Any = Registry()
    audience = Audience(registry, [("room", "x")], [Target("t0"), Target("t1")])
    it = iter(audience)
    assert [next(it).connection_id for _ in range(3)] == ["t0", "t1", "s0"]
    targets, queries = audience.rest()
    assert [t.connection_id for t in targets] == ["s1", "s2", "s3"] and queries == ["unfinished"]


def test_an_unstarted_audience_rests_with_its_targets_first() -> None:
    registry: Any = Registry()
    audience = Audience(registry, [("room", "x")], [Target("t0")])
    targets, _ = audience.rest()
    assert [t.connection_id for t in targets] == ["t0", "s0", "s1", "s2", "s3"]
