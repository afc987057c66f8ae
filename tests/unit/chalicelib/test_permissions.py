"""The permission policy: every rule of docs/PROTOCOL.md "Permissions", without I/O."""

from __future__ import annotations

import pytest

from chalicelib import namespaces
from chalicelib.capabilities import ALL_OPERATIONS, Operation, parse_claim
from chalicelib.namespaces import Namespace
from chalicelib.permissions import Grant, Principal, Verdict, decide, may_see_presence, missing

JOIN, SEND, HISTORY, PRESENCE = Operation
CONFIG = namespaces.load(None)  # the shipped document
NOW = 1_000_000.0


def ns(room: str) -> Namespace:
    return CONFIG.of(room)


def verdict(
    room: str, principal: Principal, operation: Operation, grant: Grant | None = None
) -> Verdict:
    return decide(ns(room), principal, room, operation, grant, NOW).verdict


ALICE = Principal("alice")
ADMIN = Principal("boss", admin=True)
LOCAL = Principal("anyone", verified=False)  # AUTH_MODE=none
TEAM = Principal(
    "bob",
    capabilities=parse_claim({"private:team-42": ["*"], "private:org-7-*": ["join"]}),
)


@pytest.mark.parametrize("operation", list(Operation))
def test_the_default_namespace_allows_every_user(operation: Operation) -> None:
    assert verdict("lobby", ALICE, operation) is Verdict.ALLOW


@pytest.mark.parametrize("operation", list(Operation))
def test_private_needs_each_operation_from_the_claim(operation: Operation) -> None:
    assert verdict("private:team-42", ALICE, operation) is Verdict.DENY
    assert verdict("private:team-42", TEAM, operation) is Verdict.ALLOW
    expected = Verdict.ALLOW if operation is JOIN else Verdict.DENY
    assert verdict("private:org-7-sales", TEAM, operation) is expected


def test_a_refusal_names_the_operation_and_room_never_the_rule() -> None:
    decision = decide(ns("private:x"), ALICE, "private:x", SEND, None, NOW)
    assert decision.message == missing(SEND, "private:x")
    assert decision.message == "missing operation 'send' on room 'private:x'"
    for word in ("capability", "namespace", "claim", "admin", "policy"):
        assert word not in decision.message


def test_announce_lets_anyone_join_and_read_but_only_admins_send() -> None:
    for operation in (JOIN, HISTORY, PRESENCE):
        assert verdict("announce:news", ALICE, operation) is Verdict.ALLOW
    assert verdict("announce:news", ALICE, SEND) is Verdict.DENY
    # A claim does not make a user an admin.
    assert verdict(
        "announce:news", Principal("c", capabilities=parse_claim({"*": ["*"]})), SEND
    ) is (Verdict.DENY)
    assert verdict("announce:news", ADMIN, SEND) is Verdict.ALLOW


@pytest.mark.parametrize("room", ["lobby", "private:x", "announce:x", "support:someone"])
@pytest.mark.parametrize("operation", list(Operation))
def test_the_admin_role_may_do_everything(room: str, operation: Operation) -> None:
    assert verdict(room, ADMIN, operation) is Verdict.ALLOW


def test_without_auth_capability_and_admin_rules_allow_everyone() -> None:
    for operation in Operation:
        assert verdict("private:x", LOCAL, operation) is Verdict.ALLOW
    assert verdict("announce:x", LOCAL, SEND) is Verdict.ALLOW
    # ... but the authorizer is still asked: it is the app's own code and runs locally too.
    assert verdict("support:anyone", LOCAL, JOIN) is Verdict.ASK
    # An unverified "admin" is no admin.
    assert verdict("support:x", Principal("x", admin=True, verified=False), JOIN) is Verdict.ASK


def test_an_authorizer_namespace_asks_then_uses_the_grant_until_it_expires() -> None:
    room = "support:alice"
    assert verdict(room, ALICE, JOIN) is Verdict.ASK
    grant = Grant(True, frozenset({JOIN, SEND}), expires_at=NOW + 10)
    assert verdict(room, ALICE, JOIN, grant) is Verdict.ALLOW
    assert verdict(room, ALICE, SEND, grant) is Verdict.ALLOW
    assert verdict(room, ALICE, HISTORY, grant) is Verdict.DENY  # not in the answer
    stale = Grant(True, ALL_OPERATIONS, expires_at=NOW)
    assert verdict(room, ALICE, JOIN, stale) is Verdict.ASK
    refused = Grant(False, frozenset(), expires_at=NOW + 10)
    assert verdict(room, ALICE, JOIN, refused) is Verdict.DENY  # a cached refusal: no call


def test_a_claim_is_enough_in_an_authorizer_namespace() -> None:
    agent = Principal("agent", capabilities=parse_claim({"support:*": ["*"]}))
    for operation in Operation:
        assert verdict("support:alice", agent, operation) is Verdict.ALLOW


def test_history_and_presence_can_be_turned_off_for_all_but_admins() -> None:
    quiet = namespaces.parse({"namespaces": {"quiet": {"history": False, "presence": False}}}).of(
        "quiet:1"
    )
    for operation in (HISTORY, PRESENCE):
        assert decide(quiet, ALICE, "quiet:1", operation).verdict is Verdict.DENY
        assert decide(quiet, LOCAL, "quiet:1", operation).verdict is Verdict.DENY
        assert decide(quiet, ADMIN, "quiet:1", operation).verdict is Verdict.ALLOW
    assert decide(quiet, ALICE, "quiet:1", JOIN).verdict is Verdict.ALLOW


def test_send_capability_with_open_join() -> None:
    speak = namespaces.parse({"namespaces": {"stage": {"send": "capability"}}}).of("stage:1")
    speaker = Principal("s", capabilities=parse_claim({"stage:*": ["send"]}))
    assert decide(speak, ALICE, "stage:1", JOIN).verdict is Verdict.ALLOW
    assert decide(speak, ALICE, "stage:1", HISTORY).verdict is Verdict.ALLOW
    assert decide(speak, ALICE, "stage:1", SEND).verdict is Verdict.DENY
    assert decide(speak, speaker, "stage:1", SEND).verdict is Verdict.ALLOW


def test_presence_events_go_only_to_members_who_may_see_them() -> None:
    joiner = Principal("j", capabilities=parse_claim({"private:x": ["join"]}))
    assert not may_see_presence(ns("private:x"), joiner, "private:x", None, NOW)
    assert may_see_presence(ns("private:x"), TEAM, "private:team-42", None, NOW)
    assert may_see_presence(ns("lobby"), ALICE, "lobby", None, NOW)
    # An answer that would need asking counts as no (presence is decided at join).
    assert not may_see_presence(ns("support:j"), joiner, "support:j", None, NOW)
