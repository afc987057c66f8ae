"""access.py without I/O: a connection's principal, the authorizer asked once and cached, the
token's permission claims, the cached answers as the item keeps them, the ephemeral hook."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from chalicelib import namespaces
from chalicelib.access import (
    Access,
    PermissionDenied,
    grant_to_item,
    grants_from_item,
    permission_claims,
)
from chalicelib.authorizer import Authorizer, AuthorizerUnavailable
from chalicelib.capabilities import NONE, Capabilities, ClaimError, Operation, parse_claim
from chalicelib.namespaces import Ephemeral
from chalicelib.permissions import Grant, Verdict
from chalicelib.protocol import valid_room

NOW = 10_000.0


@dataclass
class Conn:
    user_id: str = "u_1"
    role: str | None = None
    capabilities: Capabilities = NONE
    claims: Mapping[str, Any] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)

    def grant(self, room: str) -> Grant | None:
        return self.grants.get(room)


def access(answers: list[Any], auth_mode: str = "jwt") -> tuple[Access, list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    def invoke(function: str, payload: bytes, timeout: float) -> tuple[bytes, str | None]:
        calls.append(json.loads(payload))
        answer = answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return json.dumps(answer).encode(), None

    authorizer = Authorizer(invoke, {"authorize_support": "fn"}, clock=lambda: NOW)
    return Access(namespaces.load(None), authorizer, auth_mode, clock=lambda: NOW), calls


def test_an_allowing_answer_is_returned_to_cache_and_then_used() -> None:
    gate, calls = access([{"allow": True, "operations": ["send"], "ttlSeconds": 60}])
    conn = Conn(claims={"sub": "u_1"})
    checked = gate.check(conn, "support:u_1", Operation.JOIN)
    assert checked.grant is not None and checked.grant.expires_at == NOW + 60
    assert calls == [
        {"userId": "u_1", "room": "support:u_1", "operation": "join", "claims": {"sub": "u_1"}}
    ]
    conn.grants["support:u_1"] = checked.grant
    assert gate.check(conn, "support:u_1", Operation.SEND).grant is None  # no call, no new grant
    with pytest.raises(PermissionDenied, match="missing operation 'history'"):
        gate.check(conn, "support:u_1", Operation.HISTORY)  # the cached answer did not grant it
    assert len(calls) == 1


def test_a_refusal_or_a_zero_ttl_answer_is_not_cached() -> None:
    gate, calls = access([{"allow": False, "ttlSeconds": 60}, {"allow": True}])
    with pytest.raises(PermissionDenied, match="missing operation 'join' on room 'support:u_2'"):
        gate.check(Conn(), "support:u_2", Operation.JOIN)
    checked = gate.check(Conn(), "support:u_1", Operation.JOIN)
    assert checked.decision.allowed and checked.grant is None
    assert len(calls) == 2


def test_an_authorizer_failure_propagates_as_unavailable() -> None:
    gate, _ = access([TimeoutError()])
    with pytest.raises(AuthorizerUnavailable):
        gate.check(Conn(), "support:u_1", Operation.JOIN)


def test_without_auth_the_role_and_claims_count_for_nothing() -> None:
    gate, _ = access([], auth_mode="none")
    fake_admin = Conn(role="admin", capabilities=parse_claim({"*": ["*"]}))
    principal = gate.principal(fake_admin)
    assert not principal.admin and not principal.verified and principal.capabilities is NONE
    assert gate.decide(fake_admin, "private:x", Operation.SEND).verdict is Verdict.ALLOW
    assert gate.decide(fake_admin, "support:x", Operation.JOIN).verdict is Verdict.ASK


def test_presence_visibility_at_join() -> None:
    gate, _ = access([])
    assert gate.sees_presence(Conn(), "lobby")
    assert not gate.sees_presence(
        Conn(capabilities=parse_claim({"private:x": ["join"]})), "private:x"
    )
    assert gate.sees_presence(Conn(capabilities=parse_claim({"private:x": ["*"]})), "private:x")
    joined = Grant(True, frozenset({Operation.JOIN, Operation.PRESENCE}), NOW + 5)
    assert gate.sees_presence(Conn(), "support:u_1", joined)


def test_the_ephemeral_option_of_a_sends_room() -> None:
    config = namespaces.parse(
        {"namespaces": {"typing": {"ephemeral": "always"}, "audit": {"ephemeral": "forbidden"}}}
    )
    gate = Access(config, None)
    assert gate.ephemeral_option("room", "typing:doc-1") is Ephemeral.ALWAYS
    assert gate.ephemeral_option("room", "audit:1") is Ephemeral.FORBIDDEN
    assert gate.ephemeral_option("room", "lobby") is Ephemeral.ALLOWED
    assert gate.ephemeral_option("user", None) is Ephemeral.ALLOWED
    assert gate.ephemeral_option("all", None) is Ephemeral.ALLOWED


def test_permission_claims_from_a_token() -> None:
    claims = {"sub": "u", "rooms": {"private:*": ["join"]}, "autoJoin": ["a", "b", "a"]}
    found = permission_claims(claims, valid_room)
    assert found.capabilities.allows("private:x", Operation.JOIN)
    assert found.auto_join == ("a", "b")  # once each, in order
    assert found.claims == claims
    with pytest.raises(ClaimError, match="exceed 4096 bytes"):
        permission_claims({"sub": "u", "blob": "x" * 5000}, valid_room)


def test_cached_answers_round_trip_through_the_item_and_bad_entries_are_dropped() -> None:
    grant = Grant(True, frozenset({Operation.JOIN, Operation.SEND}), 1234.0)
    item = {"support:u": grant_to_item(grant), "bad": {"ops": ["read"], "exp": 1}, "x": 5}
    assert grants_from_item(item) == {"support:u": grant}
    assert grants_from_item(None) == {}
