"""The authorizer contract: the app's own Lambda decides who may use a ``join: authorizer`` room.

A namespace names its authorizer by its Chalice name (``@app.lambda_function(name=...)`` in
app.py); the deployed function's name comes from the ``AUTHORIZER_FUNCTIONS`` setting (a JSON
object, Chalice name -> deployed name or ARN), which both deploy paths set: .chalice/config.json
per stage for ``chalice deploy`` (Chalice names a function ``<app>-<stage>-<name>``) and the
merge template (``{"Ref": <the function's resource>}``) for the packaged stack, whose roles may
invoke that function only.

Request (the function's event)::

    {"userId": "u_1", "room": "support:u_1", "operation": "join", "claims": {...token claims}}

Answer (its return value)::

    {"allow": true, "operations": ["join", "send", "history", "presence"], "ttlSeconds": 300}

``operations`` (optional) is everything the answer grants on the room; the operation asked for
is granted with ``allow`` true whether listed or not. ``ttlSeconds`` (optional, default 0) is
how long the answer is cached for this connection and room, capped by the namespace's
``maxCacheSeconds``. A refusal is cached as long, so a client cannot make the app call its
function on every frame.

It fails closed: a call that times out (the namespace's ``authorizerTimeoutMs``), a function
error, or an answer that is not of this shape raises ``AuthorizerUnavailable``, which the
client receives as error code ``unavailable``; the log line says which.

Lambda's synchronous invoke: ``Invoke`` with ``InvocationType=RequestResponse`` returns the
function's return value as ``Payload`` and, when the function raised or timed out, a
``FunctionError`` field ("Unhandled") with the error as the payload (botocore's
``lambda/2015-03-31/service-2.json``, ``InvocationResponse``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.capabilities import ClaimError, Operation, parse_operations
from chalicelib.config import ConfigError
from chalicelib.namespaces import Namespace
from chalicelib.permissions import Grant

SETTING = "AUTHORIZER_FUNCTIONS"
log = logging.getLogger("switchboard.authorizer")

# Claims worth passing on: the registered ones the app may use, and its own. Bounded, as the
# event is built from what the connection item keeps (auth.py stores these).
MAX_CLAIMS_BYTES = 4096


class AuthorizerUnavailable(Exception):
    """The authorizer could not answer (timeout, function error, malformed answer): refuse."""

    code = "unavailable"

    def __init__(self, function: str, reason: str) -> None:
        super().__init__(f"the authorizer {function} could not answer: {reason}")
        self.function = function
        self.reason = reason


@dataclass(frozen=True)
class AuthorizerRequest:
    user_id: str
    room: str
    operation: Operation
    claims: Mapping[str, Any]

    def payload(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "room": self.room,
            "operation": self.operation.value,
            "claims": dict(self.claims),
        }


def parse_answer(answer: Any, asked: Operation, namespace: Namespace, now: float) -> Grant:
    """The function's return value as a Grant; ValueError if it is not the contract's shape."""
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    allow = answer.get("allow")
    if not isinstance(allow, bool):
        raise ValueError("'allow' must be true or false")
    ops: frozenset[Operation] = frozenset()
    if answer.get("operations") is not None:
        try:
            ops = parse_operations(answer["operations"], "'operations'")
        except ClaimError as exc:
            raise ValueError(str(exc)) from None
    ttl = answer.get("ttlSeconds", 0)
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl >= 0:
        raise ValueError("'ttlSeconds' must be a number >= 0")
    if allow:
        ops |= {asked}
    else:
        ops = frozenset()
    ttl = min(float(ttl), float(namespace.max_cache_seconds))
    return Grant(allow=allow, operations=ops, expires_at=now + ttl)


def function_names(raw: str | None, needed: set[str]) -> dict[str, str]:
    """The ``AUTHORIZER_FUNCTIONS`` map, checked to name every authorizer a namespace uses.

    Unset, each authorizer is called by its Chalice name: what the local gateway serves
    (``make run``, the tests). Both deploy paths set it (deploy/template.py, config.json), and
    on AWS a function that does not exist fails closed like any other failed call."""
    raw = (raw or "").strip()
    if not raw:
        return {name: name for name in sorted(needed)}
    try:
        names: Any = json.loads(raw)
    except ValueError:
        raise ConfigError(f"{SETTING} must be a JSON object of name -> function") from None
    if not isinstance(names, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in names.items()
    ):
        raise ConfigError(f"{SETTING} must be a JSON object of Chalice name -> function name")
    missing = sorted(needed - set(names))
    if missing:
        raise ConfigError(
            f"{SETTING} has no deployed name for the authorizer {missing[0]!r} "
            "that ROOM_NAMESPACES names"
        )
    return dict(names)


# What calls a function: (deployed name, payload bytes, timeout seconds) -> (payload bytes,
# function error or None). wiring.py builds it over boto3's Lambda client; tests pass a fake.
Invoke = Callable[[str, bytes, float], tuple[bytes, str | None]]


class Authorizer:
    """Calls a namespace's authorizer function and turns its answer into a Grant."""

    def __init__(
        self,
        invoke: Invoke,
        functions: Mapping[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._invoke = invoke
        self._functions = dict(functions)
        self._clock = clock
        self.calls = 0  # for the cost measurements (docs/PERFORMANCE.md)

    def ask(self, namespace: Namespace, request: AuthorizerRequest) -> Grant:
        """The function's Grant for ``request``; AuthorizerUnavailable when it cannot say."""
        name = namespace.authorizer
        if name is None:
            raise ValueError(f"namespace {namespace.name!r} has no authorizer")
        function = self._functions.get(name)
        if function is None:  # settings refuse this at start; kept as a closed door
            raise AuthorizerUnavailable(name, "no deployed function name")
        payload = json.dumps(request.payload(), separators=(",", ":")).encode("utf-8")
        started = time.perf_counter()
        self.calls += 1
        try:
            body, error = self._invoke(function, payload, namespace.authorizer_timeout_ms / 1000)
        except Exception as exc:  # noqa: BLE001 - timeouts and AWS errors alike: fail closed
            self._log(name, request, started, f"call failed: {type(exc).__name__}")
            raise AuthorizerUnavailable(name, f"call failed ({type(exc).__name__})") from exc
        if error is not None:
            self._log(name, request, started, f"function error: {error}")
            raise AuthorizerUnavailable(name, "function error")
        try:
            grant = parse_answer(
                json.loads(body or b"null"), request.operation, namespace, self._clock()
            )
        except ValueError as exc:
            self._log(name, request, started, f"bad answer: {exc}")
            raise AuthorizerUnavailable(name, "malformed answer") from None
        log.info(
            "authorizer %s: %s %s on %s -> %s in %.0f ms",
            name,
            request.user_id,
            request.operation.value,
            request.room,
            "allow" if grant.allow else "deny",
            (time.perf_counter() - started) * 1000,
        )
        return grant

    @staticmethod
    def _log(name: str, request: AuthorizerRequest, started: float, reason: str) -> None:
        log.error(
            "authorizer %s unavailable (%s) for %s %s on %s after %.0f ms: refused",
            name,
            reason,
            request.user_id,
            request.operation.value,
            request.room,
            (time.perf_counter() - started) * 1000,
        )


def lambda_invoke(client_for: Callable[[float], Any]) -> Invoke:
    """An ``Invoke`` over boto3 Lambda clients; ``client_for(timeout)`` returns one whose read
    timeout is ``timeout`` and that does not retry (a retry would double the wait the join
    has to stay within)."""

    def invoke(function: str, payload: bytes, timeout: float) -> tuple[bytes, str | None]:
        response = client_for(timeout).invoke(
            FunctionName=function, InvocationType="RequestResponse", Payload=payload
        )
        body = response["Payload"].read()
        return body, response.get("FunctionError")

    return invoke


# --- the example authorizer (app.py's ``authorize_support``) -------------------------------

SUPPORT_PREFIX = "support:"
SUPPORT_OPERATIONS = ["join", "send", "history", "presence"]
SUPPORT_TTL_SECONDS = 300


def support_room_answer(event: Any) -> dict[str, Any]:
    """``support:<userId>`` is that user's own conversation: they may do everything there;
    nobody else may (support agents come in with the admin role or a ``rooms`` claim, which
    never reach the authorizer). One room per user: a suffix after the id could not be told
    apart from another user's id (ids may contain ``-``, ``.`` and ``:``)."""
    if not isinstance(event, dict):
        return {"allow": False, "ttlSeconds": 0}
    user, room = event.get("userId"), event.get("room")
    if isinstance(user, str) and isinstance(room, str) and room == SUPPORT_PREFIX + user:
        return {"allow": True, "operations": SUPPORT_OPERATIONS, "ttlSeconds": SUPPORT_TTL_SECONDS}
    return {"allow": False, "ttlSeconds": SUPPORT_TTL_SECONDS}
