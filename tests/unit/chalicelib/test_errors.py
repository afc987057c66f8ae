"""errors.py: every error type's wire code, HTTP status and retry flag, mapped once to a frame
and once to an HTTP answer; ``classify`` reads what the lower modules raise."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoRegionError

from chalicelib import errors, protocol
from chalicelib.access import PermissionDenied
from chalicelib.auth import AuthError
from chalicelib.authorizer import AuthorizerUnavailable
from chalicelib.broadcaster import PayloadTooLarge
from chalicelib.capabilities import Operation
from chalicelib.config import ConfigError
from chalicelib.idempotency import ClientMsgIdReused, SendInProgress
from chalicelib.message_log import LogWriteError
from chalicelib.permissions import Decision, Verdict, missing
from chalicelib.registry import NotConnected


def _caused(cause: Exception) -> LogWriteError:
    try:
        raise LogWriteError("no") from cause
    except LogWriteError as exc:
        return exc


THROTTLED = ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "PutItem")
BROKEN = ClientError({"Error": {"Code": "InternalServerError"}}, "Query")

# (raised below the service, its type, frame code, HTTP status, HTTP body's error, retryable)
CASES = [
    (errors.BadRequest("body must be a JSON object"), errors.BadRequest, "bad_request", 400,
     "body must be a JSON object", False),
    (AuthError("missing bearer token"), errors.Unauthenticated, "forbidden", 401,
     "missing bearer token", False),
    (AuthError("admin role required", status=403), errors.Forbidden, "forbidden", 403,
     "admin role required", False),
    (AuthError("bad userId", status=400), errors.BadRequest, "bad_request", 400, "bad userId", False),
    (errors.NotFound("connection x not found"), errors.NotFound, "not_found", 404,
     "connection x not found", False),
    (NotConnected("c1"), errors.NotRegistered, "not_found", 404,
     "this connection is not registered; reconnect", False),
    (SendInProgress(), errors.InProgress, "rate_limited", 409, str(SendInProgress()), True),
    (ClientMsgIdReused(), errors.BadRequest, "bad_request", 400, str(ClientMsgIdReused()), False),
    (PayloadTooLarge("payload is 200000 bytes"), errors.TooLarge, "too_large", 502,
     "payload is 200000 bytes", False),
    (ConfigError("JWT_SECRET must be at least 32 bytes"), errors.Misconfigured, "internal", 500,
     errors.MISCONFIGURED, False),
    (_caused(THROTTLED), errors.LogThrottled, "rate_limited", 503,
     "the message could not be logged; nothing was sent", True),
    (_caused(BROKEN), errors.LogUnavailable, "internal", 503,
     "the message could not be logged; nothing was sent", True),
    (THROTTLED, errors.UpstreamBusy, "rate_limited", 502, "upstream error; see the function's logs", True),
    (BROKEN, errors.Upstream, "internal", 502, "upstream error; see the function's logs", True),
    (KeyError("surprise"), errors.Internal, "internal", 502, "upstream error; see the function's logs", False),
    # Raised to Lambda (never answered to a client) so SQS delivers the batch again.
    (errors.ContinuationBatchFailed(1, 2), errors.ContinuationBatchFailed, "internal", 500,
     "1 of 2 continuation jobs failed", True),
    (PermissionDenied(Decision(Verdict.DENY, Operation.SEND, "private:x", missing(Operation.SEND, "private:x"))),
     errors.PermissionRefused, "forbidden", 403, "missing operation 'send' on room 'private:x'", False),
    (AuthorizerUnavailable("authorize_support", "call failed (ReadTimeoutError)"), errors.Unavailable,
     "unavailable", 503, str(errors.Unavailable()), True),
    (errors.TokenExpired(), errors.TokenExpired, "token_expired", 401,
     "token expired; reconnect with a fresh token", False),
    (errors.BadToken("invalid token"), errors.BadToken, "bad_token", 401, "invalid token", False),
]  # fmt: skip


@pytest.mark.parametrize(("raised", "kind", "code", "status", "message", "retryable"), CASES)
def test_each_error_maps_once_to_a_frame_and_to_http(
    raised: Exception, kind: type, code: str, status: int, message: str, retryable: bool
) -> None:
    error = errors.classify(raised)
    assert type(error) is kind
    assert (error.code, error.status, error.retryable) == (code, status, retryable)
    assert code in protocol.ERROR_CODES
    frame = error.frame("r1")
    assert frame == {"type": "error", "code": code, "message": str(error), "ref": "r1"}
    answer = errors.http_answer(raised)
    assert answer.status == status and answer.body["error"] == message


def test_every_error_type_is_covered() -> None:
    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for c in cls.__subclasses__() for s in subclasses(c)}

    assert subclasses(errors.SwitchboardError) - {errors.SwitchboardError} == {c[1] for c in CASES}


def test_a_configuration_problem_names_the_variables_never_the_values() -> None:
    answer = errors.http_answer(
        ConfigError("JWT_SECRET_PARAMETER '/secret/name' could not be read")
    )
    assert answer.body == {"error": errors.MISCONFIGURED, "missing": ["JWT_SECRET_PARAMETER"]}
    assert errors.http_answer(NoRegionError()).body["missing"] == ["AWS_REGION"]
    unreachable = _caused(EndpointConnectionError(endpoint_url="http://localhost:1"))
    answer = errors.http_answer(unreachable)
    assert answer.status == 500 and "could not be reached" in answer.body["error"]
    assert answer.body["missing"] == []


def test_frames_and_answers_never_quote_an_aws_error() -> None:
    secret = ClientError(
        {"Error": {"Code": "ValidationException", "Message": "table-xyz"}}, "Query"
    )
    error = errors.classify(secret)
    assert "table-xyz" not in str(error.frame()) and "table-xyz" not in str(error.http())
    assert error.detail == "ValidationException"


def test_an_ephemeral_refusal_keeps_its_code() -> None:
    from chalicelib.ephemeral import EphemeralRefused

    forbidden = errors.classify(EphemeralRefused("forbidden", "no ephemeral sends here"))
    assert (forbidden.code, forbidden.status, str(forbidden)) == (
        "forbidden", 403, "no ephemeral sends here",
    )  # fmt: skip
    assert (
        errors.classify(EphemeralRefused("bad_request", "drop clientMsgId")).code == "bad_request"
    )
