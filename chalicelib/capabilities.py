"""Capabilities in the token: the ``rooms`` claim, what it grants, and how a room is matched.

The claim maps a room name, or a pattern ending in ``*`` (every room whose name starts with
what precedes it; ``*`` alone is every room), to operations from ``join``, ``send``,
``history``, ``presence`` or ``*`` (all four)::

    {"rooms": {"private:team-42": ["join", "send", "history", "presence"],
               "private:org-7-*": ["join"]}}

The most specific entry that matches a room wins, alone (Ably's capability maps work the same
way): an exact name beats every pattern, a longer pattern beats a shorter one. So
``{"private:*": ["*"], "private:ro-*": ["join"]}`` lets ``private:ro-1`` be joined but not
sent to. Nothing here does I/O: a claim is parsed once, when a token is verified, and kept on
the connection (``as_claim`` gives it back in the same shape).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CLAIM = "rooms"
# Bounded because the grants live on the connection's item (400 KB items, and every frame
# reads it): 64 entries of at most 65 characters and 4 operations stay under 8 KB.
MAX_ENTRIES = 64
WILDCARD = "*"
# protocol.ROOM_RE's charset; a pattern is such a prefix (possibly empty) followed by "*".
_NAME_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:-]{0,64}$")


class Operation(enum.StrEnum):
    """What a grant allows on a room."""

    JOIN = "join"
    SEND = "send"
    HISTORY = "history"
    PRESENCE = "presence"


ALL_OPERATIONS = frozenset(Operation)


class ClaimError(ValueError):
    """A ``rooms`` claim (or an authorizer's ``operations``) that is not well formed."""


def parse_operations(value: Any, where: str) -> frozenset[Operation]:
    """A list of operation names (``*`` meaning all) as a set; ClaimError otherwise."""
    if not isinstance(value, list) or not value:
        raise ClaimError(f"{where} must be a non-empty list of operations")
    out: set[Operation] = set()
    for item in value:
        if item == WILDCARD:
            out |= ALL_OPERATIONS
            continue
        try:
            out.add(Operation(item))
        except ValueError:
            names = ", ".join([*(o.value for o in Operation), WILDCARD])
            raise ClaimError(f"{where}: {item!r} is not an operation ({names})") from None
    return frozenset(out)


@dataclass(frozen=True)
class Capabilities:
    """A parsed ``rooms`` claim: exact names and ``*`` patterns, each with its operations."""

    exact: Mapping[str, frozenset[Operation]] = field(default_factory=dict)
    # (prefix, operations), longest prefix first: the first that matches is the most specific.
    patterns: tuple[tuple[str, frozenset[Operation]], ...] = ()

    def operations(self, room: str) -> frozenset[Operation]:
        """What the most specific matching entry grants on ``room`` (empty: no entry)."""
        exact = self.exact.get(room)
        if exact is not None:
            return exact
        for prefix, ops in self.patterns:
            if room.startswith(prefix):
                return ops
        return frozenset()

    def allows(self, room: str, operation: Operation) -> bool:
        return operation in self.operations(room)

    def __bool__(self) -> bool:
        return bool(self.exact or self.patterns)

    def as_claim(self) -> dict[str, list[str]]:
        """The claim's JSON shape, operations sorted (stored on the connection as is)."""
        out = {room: sorted(o.value for o in ops) for room, ops in self.exact.items()}
        out.update(
            {prefix + WILDCARD: sorted(o.value for o in ops) for prefix, ops in self.patterns}
        )
        return out

    def rooms_lost(self, newer: Capabilities, rooms: Iterable[str]) -> set[str]:
        """Which of ``rooms`` this grants ``join`` on and ``newer`` does not."""
        return {
            r
            for r in rooms
            if self.allows(r, Operation.JOIN) and not newer.allows(r, Operation.JOIN)
        }


NONE = Capabilities()


def parse_claim(value: Any) -> Capabilities:
    """The ``rooms`` claim's value (None: absent) as Capabilities; ClaimError if malformed.

    A malformed claim is refused rather than ignored: the token comes from the app's own
    back end, and a grant silently dropped would look like a permission bug.
    """
    if value is None:
        return NONE
    if not isinstance(value, dict):
        raise ClaimError(f"the {CLAIM!r} claim must be an object of room or pattern -> operations")
    if len(value) > MAX_ENTRIES:
        raise ClaimError(f"the {CLAIM!r} claim has more than {MAX_ENTRIES} entries")
    exact: dict[str, frozenset[Operation]] = {}
    patterns: dict[str, frozenset[Operation]] = {}
    for key, ops in value.items():
        where = f"{CLAIM}[{key!r}]"
        operations = parse_operations(ops, where)
        if isinstance(key, str) and key.endswith(WILDCARD):
            prefix = key[: -len(WILDCARD)]
            if not _PREFIX_RE.fullmatch(prefix):
                raise ClaimError(f"{where}: a pattern is a room-name prefix followed by one '*'")
            patterns[prefix] = operations
        elif isinstance(key, str) and _NAME_RE.fullmatch(key):
            exact[key] = operations
        else:
            raise ClaimError(
                f"{where}: not a room name (1-64 of A-Z a-z 0-9 _ . : -) or a pattern ending in '*'"
            )
    ordered = tuple(sorted(patterns.items(), key=lambda item: len(item[0]), reverse=True))
    return Capabilities(exact, ordered)
