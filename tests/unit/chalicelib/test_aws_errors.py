"""One reading of a failed AWS call: its code, and botocore's verdict on throttling."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from chalicelib.aws_errors import error_code, is_throttling


def client_error(code: str | None, status: int = 400) -> ClientError:
    error = {"Message": "m"} if code is None else {"Code": code, "Message": "m"}
    response = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "Query")  # type: ignore[arg-type]


def test_error_code_is_the_aws_code_or_the_exception_type() -> None:
    assert error_code(client_error("ConditionalCheckFailedException")) == (
        "ConditionalCheckFailedException"
    )
    assert error_code(client_error(None)) == "ClientError"
    assert error_code(EndpointConnectionError(endpoint_url="http://x")) == (
        "EndpointConnectionError"
    )


@pytest.mark.parametrize(
    "code",
    [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
    ],
)
def test_throttling_codes_come_from_botocore(code: str) -> None:
    assert is_throttling(client_error(code))


@pytest.mark.parametrize(
    "exc",
    [
        client_error("ConditionalCheckFailedException"),
        client_error("InternalServerError", 500),
        client_error(None),
        EndpointConnectionError(endpoint_url="http://x"),
    ],
    ids=["conditional", "5xx", "no-code", "network"],
)
def test_other_errors_are_not_throttling(exc: Exception) -> None:
    assert not is_throttling(exc)
