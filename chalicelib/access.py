"""Enforcing the permission policy for a connection: the policy (permissions.py), the room's
namespace (namespaces.py), the token's capabilities and the authorizer function, together.

``Access.check`` is what every room operation calls before acting (join, send, history and
resume of a room stream, members, and the presence events a member receives): it decides from
what the connection already holds (its role and ``rooms`` claim, and the authorizer's answers
cached on its item) and calls the authorizer only when a ``join: authorizer`` namespace needs
an answer it has not got, or one that ran out. It returns what the caller must store (a new
answer, for this connection and room) and raises ``PermissionDenied`` (error ``forbidden``)
or ``authorizer.AuthorizerUnavailable`` (error ``unavailable``). It does no I/O of its own
besides the authorizer call: the connection item is read and written by the caller.

Refusals are not cached: a client that asks again is asking for another call of the function,
and the per-connection frame rate limit (limits.py) already bounds how often it can.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib.authorizer import Authorizer, AuthorizerRequest, AuthorizerUnavailable
from chalicelib.capabilities import (
    NONE,
    Capabilities,
    ClaimError,
    Operation,
    parse_claim,
    parse_operations,
)
from chalicelib.namespaces import Ephemeral, Namespace, Namespaces
from chalicelib.permissions import Decision, Grant, Principal, Verdict, decide, missing

AUTO_JOIN_CLAIM = "autoJoin"
MAX_AUTO_JOIN = 10
# The claims an authorizer receives are the token's, kept on the connection item: bounded.
MAX_CLAIMS_BYTES = 4096


class PermissionDenied(Exception):
    """The connection may not do this (error ``forbidden``; the message names the operation
    and the room, never the rule)."""

    code = "forbidden"

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.message)
        self.decision = decision


class Holder(Protocol):
    """What ``Access`` reads of a connection (the registry's ``ConnectionRecord``)."""

    @property
    def user_id(self) -> str: ...

    @property
    def role(self) -> str | None: ...

    @property
    def capabilities(self) -> Capabilities: ...

    @property
    def claims(self) -> Mapping[str, Any]: ...

    def grant(self, room: str) -> Grant | None: ...


@dataclass(frozen=True)
class Checked:
    """An allowed operation; ``grant`` is a new authorizer answer to cache for this
    connection and room (None: nothing new)."""

    decision: Decision
    grant: Grant | None = None


@dataclass
class Access:
    namespaces: Namespaces
    authorizer: Authorizer | None
    auth_mode: str = "jwt"
    admin_role: str = "admin"
    clock: Callable[[], float] = time.time
    # How many authorizer calls this container made (docs: the cost of a join).
    calls: int = field(default=0)

    def namespace(self, room: str) -> Namespace:
        return self.namespaces.of(room)

    def principal(self, holder: Holder) -> Principal:
        verified = self.auth_mode == "jwt"
        return Principal(
            user_id=holder.user_id,
            admin=verified and holder.role == self.admin_role,
            capabilities=holder.capabilities if verified else NONE,
            verified=verified,
        )

    def decide(self, holder: Holder, room: str, operation: Operation) -> Decision:
        """The decision from what the connection holds, without calling anyone (ASK when the
        authorizer would have to be called)."""
        return decide(
            self.namespace(room),
            self.principal(holder),
            room,
            operation,
            holder.grant(room),
            self.clock(),
        )

    def check(self, holder: Holder, room: str, operation: Operation) -> Checked:
        """Allowed (with a grant to cache, if the authorizer was asked), or raise
        ``PermissionDenied`` / ``AuthorizerUnavailable``."""
        decision = self.decide(holder, room, operation)
        grant: Grant | None = None
        if decision.verdict is Verdict.ASK:
            answer = self.ask(holder, room, operation)
            # The answer decides this operation now, however short its ttl; only an allowing
            # answer still fresh is worth caching (refusals are not: module docstring).
            verdict = Verdict.ALLOW if answer.permits(operation) else Verdict.DENY
            message = "" if verdict is Verdict.ALLOW else missing(operation, room)
            decision = Decision(verdict, operation, room, message)
            if answer.allow and answer.fresh(self.clock()):
                grant = answer
        if not decision.allowed:
            raise PermissionDenied(decision)
        return Checked(decision, grant)

    def ask(self, holder: Holder, room: str, operation: Operation) -> Grant:
        namespace = self.namespace(room)
        if self.authorizer is None:
            raise AuthorizerUnavailable(str(namespace.authorizer), "no authorizer configured")
        self.calls += 1
        request = AuthorizerRequest(holder.user_id, room, operation, holder.claims)
        return self.authorizer.ask(namespace, request)

    def ephemeral_option(self, scope: str, room: str | None) -> Ephemeral:
        """The ``ephemeral`` option of a send's room (the event-model issue's per-room rule
        hook, ``Switchboard(ephemeral_rule=...)`` there: wire it as
        ``lambda scope, room: EphemeralRule(access.ephemeral_option(scope, room).value)``).
        Direct messages and broadcasts belong to no namespace: ``allowed``."""
        if scope != "room" or room is None:
            return Ephemeral.ALLOWED
        return self.namespace(room).ephemeral

    def sees_presence(self, holder: Holder, room: str, grant: Grant | None = None) -> bool:
        """Whether a member receives the room's presence events: decided at join, from what
        the connection holds then (``grant``: the answer the join itself got)."""
        namespace = self.namespace(room)
        if not namespace.presence:
            return False
        current = grant or holder.grant(room)
        return decide(
            namespace, self.principal(holder), room, Operation.PRESENCE, current, self.clock()
        ).allowed


# --- the token's permission claims --------------------------------------------------------------


@dataclass(frozen=True)
class PermissionClaims:
    """What a verified token says about rooms: its capabilities, the rooms to join at
    ``$connect``, and the claims an authorizer function receives."""

    capabilities: Capabilities = NONE
    auto_join: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict)


def permission_claims(
    claims: Mapping[str, Any], valid_room: Callable[[object], bool]
) -> PermissionClaims:
    """Read ``rooms`` and ``autoJoin`` from verified claims; ClaimError if either is malformed
    (a token from the app's own back end with a bad claim is refused, not half-honoured)."""
    import json

    capabilities = parse_claim(claims.get("rooms"))
    auto = claims.get(AUTO_JOIN_CLAIM)
    rooms: tuple[str, ...] = ()
    if auto is not None:
        if not isinstance(auto, list) or not all(valid_room(r) for r in auto):
            raise ClaimError(f"the {AUTO_JOIN_CLAIM!r} claim must be a list of room names")
        if len(auto) > MAX_AUTO_JOIN:
            raise ClaimError(f"the {AUTO_JOIN_CLAIM!r} claim lists more than {MAX_AUTO_JOIN} rooms")
        rooms = tuple(dict.fromkeys(str(r) for r in auto))
    kept = dict(claims)
    if len(json.dumps(kept, separators=(",", ":"), default=str)) > MAX_CLAIMS_BYTES:
        # The authorizer gets the claims that identify and scope the user; a token this large
        # is refused rather than truncated silently.
        raise ClaimError(f"the token's claims exceed {MAX_CLAIMS_BYTES} bytes")
    return PermissionClaims(capabilities, rooms, kept)


def grants_from_item(value: Any) -> dict[str, Grant]:
    """The cached authorizer answers as the connection item holds them (``grants`` map:
    room -> {"ops": [...], "exp": epoch seconds}); malformed entries are ignored."""
    out: dict[str, Grant] = {}
    if not isinstance(value, Mapping):
        return out
    for room, entry in value.items():
        if not isinstance(entry, Mapping):
            continue
        try:
            ops = parse_operations(list(entry.get("ops") or []), "grant")
            expires = float(entry["exp"])
        except (ClaimError, KeyError, TypeError, ValueError):
            continue
        out[str(room)] = Grant(True, ops, expires)
    return out


def grant_to_item(grant: Grant) -> dict[str, Any]:
    return {"ops": sorted(o.value for o in grant.operations), "exp": int(grant.expires_at)}


__all__ = [
    "Access",
    "AuthorizerUnavailable",
    "Checked",
    "Holder",
    "PermissionClaims",
    "PermissionDenied",
    "grant_to_item",
    "grants_from_item",
    "permission_claims",
]
