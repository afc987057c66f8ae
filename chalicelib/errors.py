"""switchboard's one error model: every refusal or failure a caller can see, in one hierarchy.

Each type carries what the outside sees of it, declared once:

- ``code``: the error frame's ``code`` on the WebSocket (the AsyncAPI document's closed list,
  ``protocol.ERROR_CODES``);
- ``status``: the HTTP status of the push/history/admin API (the OpenAPI document's);
- ``retryable``: whether the same request, retried later unchanged, can succeed.

``SwitchboardError``
    ├── ``BadRequest`` bad_request 400: the request itself is invalid (a body, a path or
    │   query parameter, a clientMsgId reused for another message).
    ├── ``Unauthenticated`` forbidden 401: no valid credentials (HTTP Bearer).
    ├── ``Forbidden`` forbidden 403: valid credentials without the right.
    │   └── ``PermissionRefused``: a room operation the namespace's rule does not allow
    │       (the message names the operation and the room, never the rule).
    ├── ``BadToken`` bad_token 401: an ``authorize`` frame's token does not verify (the
    │   connection keeps its old one).
    ├── ``TokenExpired`` token_expired 401: a frame after the token's ``exp``.
    ├── ``Unavailable`` unavailable 503, retryable: the room's authorizer function could not
    │   answer (timeout, error): refused, fail closed.
    ├── ``NotFound`` not_found 404: what the request names does not exist.
    │   └── ``NotRegistered``: the sending connection is not (or no longer) registered.
    ├── ``InProgress`` rate_limited 409, retryable: the same clientMsgId is being sent.
    ├── ``TooLarge`` too_large: the frame is over API Gateway's 128 KB message limit.
    ├── ``Misconfigured`` internal 500: the deployment lacks a setting (names in ``missing``).
    ├── ``LogUnavailable`` internal 503, retryable: the message log refused the write;
    │   nothing was sent.
    │   └── ``LogThrottled`` rate_limited: ... because DynamoDB throttled it.
    ├── ``Upstream`` internal 502, retryable: an AWS call failed.
    │   └── ``UpstreamBusy`` rate_limited: ... because AWS throttled it.
    ├── ``Internal`` internal 502: a bug; the details are in the function's log only.
    └── ``ContinuationBatchFailed`` retryable: jobs of an SQS batch failed. Raised to Lambda,
        never answered to a client: where the event source mapping has no
        ReportBatchItemFailures, raising is what keeps the batch on the queue.

``classify`` is the one place that turns what lower modules raise (their own exceptions,
botocore's ``ClientError``/``BotoCoreError``) into these; ``SwitchboardError.frame`` and
``SwitchboardError.http`` are the one mapping to an error frame and to an HTTP answer.
Messages never quote an exception of botocore's (they may name a table or a key); the log
record gets the error code (``aws_errors.error_code``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import protocol
from chalicelib.access import PermissionDenied
from chalicelib.auth import AuthError
from chalicelib.authorizer import AuthorizerUnavailable
from chalicelib.aws_errors import config_problem, error_code, is_throttling
from chalicelib.broadcaster import PayloadTooLarge
from chalicelib.config import ConfigError
from chalicelib.ephemeral import EphemeralRefused
from chalicelib.idempotency import ClientMsgIdReused, SendInProgress
from chalicelib.message_log import LogWriteError
from chalicelib.registry import NotConnected

_log = logging.getLogger("switchboard")


@dataclass(frozen=True)
class HttpAnswer:
    """An HTTP status and its JSON body (the OpenAPI document's error shape)."""

    status: int
    body: dict[str, Any]


class SwitchboardError(Exception):
    """Base of every error a caller is told about. ``str()`` is the client-safe message;
    ``http_message`` replaces it on HTTP where the two APIs have always worded it apart."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500
    retryable: ClassVar[bool] = False
    # The outcome the handler's log record gets (None: keep what the handler set).
    outcome: ClassVar[str | None] = None
    http_message: ClassVar[str | None] = None

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        # For the log only (an AWS error code, an exception type): never sent to a caller.
        self.detail = detail

    def frame(self, ref: protocol.Ref = None) -> dict[str, Any]:
        """The WebSocket error frame (``{"type":"error","code",..,"message",..,"ref"?}``)."""
        return protocol.error_frame(self.code, str(self), ref)

    def http(self) -> HttpAnswer:
        """The HTTP answer: ``status`` and ``{"error": message}``."""
        return HttpAnswer(self.status, {"error": self.http_message or str(self)})


class BadRequest(SwitchboardError):
    """The request is invalid: a body, a path or query parameter, a reused clientMsgId."""

    code = "bad_request"
    status = 400


class Unauthenticated(SwitchboardError):
    """No valid credentials (a missing, malformed or expired Bearer token)."""

    code = "forbidden"
    status = 401


class Forbidden(SwitchboardError):
    """Valid credentials without the right (not the admin role; not a member of the room)."""

    code = "forbidden"
    status = 403


class PermissionRefused(Forbidden):
    """A room operation the namespace's rule does not allow (permissions.py)."""

    outcome = "forbidden"


class BadToken(SwitchboardError):
    """An ``authorize`` frame's token does not verify; the connection keeps its old one."""

    code = "bad_token"
    status = 401
    outcome = "bad_token"


class TokenExpired(SwitchboardError):
    """A frame arrived after the connection's token expired: nothing was done, and the
    connection is closed after this answer (refresh with ``authorize`` before ``exp``)."""

    code = "token_expired"
    status = 401
    outcome = "token_expired"

    def __init__(self) -> None:
        super().__init__("token expired; reconnect with a fresh token")


class Unavailable(SwitchboardError):
    """The room's authorizer function could not answer (it timed out, failed, or is not
    there): the request is refused, and may succeed later."""

    code = "unavailable"
    status = 503
    retryable = True
    outcome = "authorizer_unavailable"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            "the room's authorizer could not answer; nothing was done, retry later", detail=detail
        )


class NotFound(SwitchboardError):
    """What the request names does not exist (a connection, a live user)."""

    code = "not_found"
    status = 404


class NotRegistered(NotFound):
    """The sending connection is not registered (expired, or removed): reconnect."""

    outcome = "not_registered"

    def __init__(self) -> None:
        super().__init__("this connection is not registered; reconnect")


class InProgress(SwitchboardError):
    """A send with the same clientMsgId is still being made: retry shortly."""

    code = "rate_limited"
    status = 409
    retryable = True
    outcome = "SendInProgress"


class TooLarge(SwitchboardError):
    """The message frame is over API Gateway's 128 KB limit; nothing was sent. HTTP keeps
    502, its answer before this model: the OpenAPI document lists no 413 for the push routes
    (a payload that large needs MAX_TEXT_CHARS near its bound and 4-byte characters)."""

    code = "too_large"
    status = 502


class Misconfigured(SwitchboardError):
    """The deployment lacks a setting or cannot reach AWS; ``missing`` names the variables
    (never their values, the table or a parameter's name)."""

    code = "internal"
    status = 500

    def __init__(self, message: str, missing: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.missing = missing

    def http(self) -> HttpAnswer:
        return HttpAnswer(self.status, {"error": str(self), "missing": list(self.missing)})


class LogUnavailable(SwitchboardError):
    """The message log could not take the message; it was not sent."""

    code = "internal"
    status = 503
    retryable = True
    outcome = "log_error"
    http_message = "the message could not be logged; nothing was sent"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(
            "the message could not be logged; nothing was sent, retry shortly", detail=detail
        )


class LogThrottled(LogUnavailable):
    """... because DynamoDB throttled the write."""

    code = "rate_limited"


class Upstream(SwitchboardError):
    """An AWS call failed (after botocore's retries); nothing more was done."""

    code = "internal"
    status = 502
    retryable = True
    outcome = "registry_error"
    http_message = "upstream error; see the function's logs"

    def __init__(
        self,
        message: str = "the message could not be processed; nothing was sent",
        detail: str | None = None,
    ) -> None:
        super().__init__(message, detail=detail)


class UpstreamBusy(Upstream):
    """... because AWS throttled it."""

    code = "rate_limited"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__("the service is busy, retry shortly", detail=detail)


class Internal(SwitchboardError):
    """Anything unexpected (a bug): the caller gets no details, the log the type."""

    code = "internal"
    status = 502
    outcome = "internal_error"
    http_message = "upstream error; see the function's logs"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__("internal error", detail=detail)


class ContinuationBatchFailed(SwitchboardError):
    """Jobs of a continuation batch failed and the worker's event source mapping cannot
    report partial batch failures (``chalice deploy``'s: CONTINUATION_PARTIAL_BATCH=false).
    Lambda's SQS poller ignores the response of such a mapping and deletes a batch whose
    invocation returned ("Handling errors for an SQS event source in Lambda", Lambda developer
    guide): the worker raises this instead, so SQS delivers the batch again after its
    visibility timeout and dead-letters it after maxReceiveCount."""

    retryable = True

    def __init__(self, failed: int, total: int) -> None:
        super().__init__(f"{failed} of {total} continuation jobs failed")
        self.failed = failed
        self.total = total


MISCONFIGURED = "server misconfigured; see the function's logs"


def reject_unknown_query(given: Mapping[str, str], allowed: Sequence[str]) -> None:
    """A 400 naming the first query parameter (sorted) that is not in ``allowed``."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        expected = ", ".join(allowed) if allowed else "none"
        raise BadRequest(f"unknown query parameter {unknown[0]!r}: expected {expected}")


def classify(exc: BaseException) -> SwitchboardError:
    """The one reading of an exception raised below the service as a ``SwitchboardError``.
    A configuration problem behind an AWS error (no region, no credentials, nothing at the
    endpoint: ``aws_errors.config_problem``) is ``Misconfigured``; throttling is botocore's
    own judgement (``aws_errors.is_throttling``)."""
    if isinstance(exc, SwitchboardError):
        return exc
    if isinstance(exc, AuthError):
        kind = {400: BadRequest, 403: Forbidden}.get(exc.status, Unauthenticated)
        return kind(str(exc))
    if isinstance(exc, ConfigError):
        # Only the variable's name: the message may quote a value or an SSM parameter's name.
        return Misconfigured(MISCONFIGURED, (exc.setting,) if exc.setting else ())
    if isinstance(exc, NotConnected):
        return NotRegistered()
    if isinstance(exc, PermissionDenied):
        return PermissionRefused(str(exc), detail=exc.decision.operation.value)
    if isinstance(exc, AuthorizerUnavailable):
        return Unavailable(f"{exc.function}: {exc.reason}")
    if isinstance(exc, PayloadTooLarge):
        return TooLarge(str(exc))
    if isinstance(exc, SendInProgress):
        return InProgress(str(exc))
    if isinstance(exc, ClientMsgIdReused):
        return BadRequest(str(exc))
    if isinstance(exc, EphemeralRefused):
        return (Forbidden if exc.code == "forbidden" else BadRequest)(str(exc))
    problem = config_problem(exc)
    if problem is not None:
        return Misconfigured(problem.message, problem.missing)
    if isinstance(exc, LogWriteError):
        cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
        if is_throttling(cause):
            return LogThrottled(error_code(cause))
        return LogUnavailable(error_code(cause))
    if isinstance(exc, (ClientError, BotoCoreError)):
        return (
            UpstreamBusy(error_code(exc))
            if is_throttling(exc)
            else Upstream(detail=error_code(exc))
        )
    return Internal(type(exc).__name__)


def http_answer(exc: BaseException) -> HttpAnswer:
    """The one mapping of an exception to the HTTP API's answer, logged as it deserves: a
    configuration problem names the variables, anything unexpected gets its traceback."""
    error = classify(exc)
    if isinstance(exc, ConfigError):
        _log.error("configuration error: %s", exc)  # the whole message: the log may quote it
    if isinstance(error, Misconfigured):
        _log.error("configuration problem: %s %s", str(error), list(error.missing))
    elif isinstance(error, (Internal, Upstream, LogUnavailable)):
        _log.error("route failed: %s", error.detail, exc_info=exc)
    return error.http()
