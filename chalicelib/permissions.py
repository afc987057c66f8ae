"""The permission policy, without I/O: may this principal do this operation on this room?

``decide`` combines the room's namespace (namespaces.py), the connection's principal (user,
admin role, the token's ``rooms`` capabilities, whether the identity was verified at all) and,
for ``join: authorizer`` namespaces, the authorizer's cached answer for this connection and
room. It answers allow, deny (with a message that names the missing operation and the room,
never the policy that refused it), or ask: the authorizer must be called (authorizer.py) and
``decide`` run again with its answer.

The rules (docs/PROTOCOL.md, "Permissions"):

- the admin role may do everything;
- ``join``, ``history`` and ``presence`` follow the namespace's ``join`` option: ``open``
  allows every authenticated user (members, for history and presence), ``capability`` needs
  the operation from the token's ``rooms`` claim, ``authorizer`` needs it from the claim or
  from the authorizer's answer;
- ``send`` follows the namespace's ``send`` option: ``members``, ``capability`` (as above) or
  ``admin``;
- a namespace with ``history`` or ``presence`` off refuses that operation to everyone but
  admins;
- in ``AUTH_MODE=none`` the identity is self-asserted, so neither a capability nor a role
  can be checked: ``capability`` and ``admin`` rules allow everyone (the local gateway's
  banner says so, as for ``broadcastAll``); ``authorizer`` rules still ask the function.

Membership (send, history and presence only for members) is the caller's check: it comes
first and has its own messages.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from chalicelib.capabilities import NONE, Capabilities, Operation
from chalicelib.namespaces import Join, Namespace, Send


@dataclass(frozen=True)
class Principal:
    """Who acts: from the connection's token (or the local, unverified identity)."""

    user_id: str
    admin: bool = False
    capabilities: Capabilities = NONE
    # False in AUTH_MODE=none: the user id is self-asserted, so no claim or role is real.
    verified: bool = True


@dataclass(frozen=True)
class Grant:
    """An authorizer's answer for one connection and room, cached until ``expires_at``
    (epoch seconds). ``allow`` false caches a refusal for as long."""

    allow: bool
    operations: frozenset[Operation]
    expires_at: float

    def fresh(self, now: float) -> bool:
        return now < self.expires_at

    def permits(self, operation: Operation) -> bool:
        return self.allow and operation in self.operations


class Verdict(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    ASK = "ask"  # call the namespace's authorizer, then decide again with its grant


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    operation: Operation
    room: str
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOW


def missing(operation: Operation, room: str) -> str:
    """The refusal's message: the operation and room, never the rule that refused it."""
    return f"missing operation {operation.value!r} on room {room!r}"


def decide(
    namespace: Namespace,
    principal: Principal,
    room: str,
    operation: Operation,
    grant: Grant | None = None,
    now: float = 0.0,
) -> Decision:
    """Whether ``principal`` may do ``operation`` on ``room`` (see the module docstring).
    ``grant`` is the authorizer's cached answer for this connection and room, if any; one
    that is not fresh at ``now`` counts as none."""
    if principal.admin and principal.verified:
        return Decision(Verdict.ALLOW, operation, room)
    if operation is Operation.HISTORY and not namespace.history:
        return _deny(operation, room)
    if operation is Operation.PRESENCE and not namespace.presence:
        return _deny(operation, room)
    if operation is Operation.SEND:
        if namespace.send is Send.MEMBERS:
            return Decision(Verdict.ALLOW, operation, room)
        if namespace.send is Send.ADMIN:
            if principal.verified:
                return _deny(operation, room)
            return Decision(Verdict.ALLOW, operation, room)
    elif namespace.join is Join.OPEN:
        return Decision(Verdict.ALLOW, operation, room)
    return _granted(namespace, principal, room, operation, grant, now)


def _granted(
    namespace: Namespace,
    principal: Principal,
    room: str,
    operation: Operation,
    grant: Grant | None,
    now: float,
) -> Decision:
    """A ``capability`` rule, or the read side of an ``authorizer`` namespace."""
    if namespace.join is not Join.AUTHORIZER and not principal.verified:
        return Decision(Verdict.ALLOW, operation, room)
    if principal.capabilities.allows(room, operation):
        return Decision(Verdict.ALLOW, operation, room)
    if namespace.join is Join.AUTHORIZER:
        if grant is None or not grant.fresh(now):
            return Decision(Verdict.ASK, operation, room)
        if grant.permits(operation):
            return Decision(Verdict.ALLOW, operation, room)
    return _deny(operation, room)


def _deny(operation: Operation, room: str) -> Decision:
    return Decision(Verdict.DENY, operation, room, missing(operation, room))


def may_see_presence(
    namespace: Namespace, principal: Principal, room: str, grant: Grant | None, now: float
) -> bool:
    """Whether a member receives the room's presence events (decided once, at join: an
    authorizer answer that would need asking counts as no)."""
    return decide(namespace, principal, room, Operation.PRESENCE, grant, now).allowed
