"""The authorizer contract: the call, the answer's shape, failing closed, the example function."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from chalicelib import namespaces
from chalicelib.authorizer import (
    Authorizer,
    AuthorizerRequest,
    AuthorizerUnavailable,
    function_names,
    parse_answer,
    support_room_answer,
)
from chalicelib.capabilities import ALL_OPERATIONS, Operation
from chalicelib.config import ConfigError

SUPPORT = namespaces.load(None).of("support:u_1")
NOW = 5000.0
REQUEST = AuthorizerRequest("u_1", "support:u_1", Operation.JOIN, {"sub": "u_1", "team": "a"})


class FakeLambda:
    """Records invocations; answers with a queued (payload, function error) or raises."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, dict[str, Any], float]] = []

    def __call__(self, function: str, payload: bytes, timeout: float) -> tuple[bytes, str | None]:
        self.calls.append((function, json.loads(payload), timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, tuple):
            return answer
        return json.dumps(answer).encode(), None


def authorizer(fake: FakeLambda) -> Authorizer:
    return Authorizer(fake, {"authorize_support": "stack-AuthorizeSupport-X"}, clock=lambda: NOW)


def test_the_call_carries_the_contracts_request_and_the_namespaces_timeout() -> None:
    fake = FakeLambda({"allow": True, "operations": ["join", "send"], "ttlSeconds": 60})
    grant = authorizer(fake).ask(SUPPORT, REQUEST)
    function, payload, timeout = fake.calls[0]
    assert function == "stack-AuthorizeSupport-X"  # the deployed name, not the Chalice one
    assert payload == {
        "userId": "u_1",
        "room": "support:u_1",
        "operation": "join",
        "claims": {"sub": "u_1", "team": "a"},
    }
    assert timeout == SUPPORT.authorizer_timeout_ms / 1000
    assert grant.allow and grant.operations == {Operation.JOIN, Operation.SEND}
    assert grant.expires_at == NOW + 60


def test_the_cache_time_is_capped_by_the_namespace() -> None:
    grant = parse_answer({"allow": True, "ttlSeconds": 10**9}, Operation.JOIN, SUPPORT, NOW)
    assert grant.expires_at == NOW + SUPPORT.max_cache_seconds
    assert parse_answer({"allow": True}, Operation.SEND, SUPPORT, NOW).expires_at == NOW


def test_allow_grants_the_operation_asked_even_unlisted_and_deny_grants_nothing() -> None:
    grant = parse_answer({"allow": True, "operations": ["history"]}, Operation.JOIN, SUPPORT, NOW)
    assert grant.operations == {Operation.JOIN, Operation.HISTORY}
    assert parse_answer(
        {"allow": True, "operations": ["*"]}, Operation.JOIN, SUPPORT, NOW
    ).operations == (ALL_OPERATIONS)
    denied = parse_answer(
        {"allow": False, "operations": ["*"], "ttlSeconds": 30}, Operation.JOIN, SUPPORT, NOW
    )
    assert not denied.allow and denied.operations == frozenset() and denied.expires_at == NOW + 30


@pytest.mark.parametrize(
    "answer",
    [
        None,
        [],
        "yes",
        {},
        {"allow": "true"},
        {"allow": 1},
        {"allow": True, "operations": "join"},
        {"allow": True, "operations": ["read"]},
        {"allow": True, "ttlSeconds": -1},
        {"allow": True, "ttlSeconds": "60"},
        {"allow": True, "ttlSeconds": float("nan")},
    ],
)
def test_a_malformed_answer_fails_closed(answer: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(AuthorizerUnavailable) as info:
        authorizer(FakeLambda(answer)).ask(SUPPORT, REQUEST)
    assert info.value.code == "unavailable"
    assert "bad answer" in caplog.text and "support:u_1" in caplog.text


@pytest.mark.parametrize(
    ("outcome", "logged"),
    [
        (TimeoutError("read timed out"), "call failed: TimeoutError"),
        (RuntimeError("AccessDenied"), "call failed: RuntimeError"),
        ((b'{"errorMessage": "boom"}', "Unhandled"), "function error: Unhandled"),
        ((b"not json", None), "bad answer"),
    ],
)
def test_a_timeout_or_error_fails_closed_with_a_log_line(
    outcome: Any, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR), pytest.raises(AuthorizerUnavailable):
        authorizer(FakeLambda(outcome)).ask(SUPPORT, REQUEST)
    assert logged in caplog.text
    assert "authorize_support unavailable" in caplog.text


def test_function_names_must_cover_every_authorizer() -> None:
    needed = {"authorize_support"}
    names = function_names('{"authorize_support": "sb-dev-authorize_support"}', needed)
    assert names == {"authorize_support": "sb-dev-authorize_support"}
    assert function_names(None, set()) == {}
    # Unset (make run, tests): the Chalice name, which the local gateway serves.
    assert function_names("", needed) == {"authorize_support": "authorize_support"}
    with pytest.raises(
        ConfigError,
        match="AUTHORIZER_FUNCTIONS has no deployed name for the authorizer 'authorize_support'",
    ):
        function_names("{}", needed)
    for bad in ("[]", "nope", '{"a": 1}', '{"a": ""}'):
        with pytest.raises(ConfigError, match="AUTHORIZER_FUNCTIONS must be a JSON object"):
            function_names(bad, set())


def test_the_example_lets_a_user_into_their_own_support_room_only() -> None:
    mine = support_room_answer({"userId": "u_1", "room": "support:u_1", "operation": "join"})
    assert mine["allow"] is True and set(mine["operations"]) == {o.value for o in Operation}
    assert mine["ttlSeconds"] > 0
    for room in ("support:u_2", "support:u_1-x", "support:u_", "private:u_1", "u_1"):
        assert support_room_answer({"userId": "u_1", "room": room})["allow"] is False, room
    for event in (None, [], {"userId": 1, "room": "support:1"}, {}):
        assert support_room_answer(event)["allow"] is False
