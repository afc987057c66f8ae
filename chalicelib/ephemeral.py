"""Whether a send is ephemeral: what the sender asked for, within its room's rule.

An ephemeral send (``"ephemeral": true``) is not logged: no seq, never replayed or in history,
no DynamoDB write at all, delivered with ``"ephemeral": true`` (typing indicators, cursors).
A room's namespace may forbid it or force it (the permissions issue's ``ephemeral`` option:
``allowed``, ``forbidden``, ``always``). ``default_rule`` is the hook the namespace policy
fills in: the service asks it once per send, with the send's scope and room (None for a
direct message or a broadcast, which belong to no namespace), and gets one of the three.
"""

from __future__ import annotations

import enum
from collections.abc import Callable


class EphemeralRule(enum.StrEnum):
    ALLOWED = "allowed"  # the sender chooses
    FORBIDDEN = "forbidden"  # every send is logged; asking for ephemeral is refused
    ALWAYS = "always"  # every send is ephemeral, asked or not


# (scope, room or None) -> the rule for a send there.
RuleFor = Callable[[str, str | None], EphemeralRule]


def default_rule(scope: str, room: str | None) -> EphemeralRule:
    """Until namespaces say otherwise, every stream lets the sender choose."""
    return EphemeralRule.ALLOWED


class EphemeralRefused(Exception):
    """The send asked for what its room's rule does not allow; ``code`` is the error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def resolve(requested: bool, rule: EphemeralRule, client_msg_id: str | None) -> bool:
    """Whether the send is ephemeral under ``rule``; raises ``EphemeralRefused`` when the
    sender asked for ephemeral where it is forbidden, or sent a ``clientMsgId`` where every
    send is ephemeral (nothing would be logged to deduplicate a retry against)."""
    if rule is EphemeralRule.FORBIDDEN and requested:
        return _refuse("forbidden", "ephemeral sends are not allowed here; send without it")
    if rule is EphemeralRule.ALWAYS:
        if client_msg_id is not None:
            return _refuse(
                "bad_request", "sends here are ephemeral (not logged): drop 'clientMsgId'"
            )
        return True
    return requested


def _refuse(code: str, message: str) -> bool:
    raise EphemeralRefused(code, message)
