"""What a failed AWS call was: its error code, and whether AWS was throttling us.

One reading of botocore's ``ClientError`` for every caller. Throttling is botocore's own
judgement (``botocore.retries.standard.ThrottlingErrorDetector``, the detector standard retry
mode backs off with, as ``transport.py`` uses it), not a hand-kept list of codes.
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.retries.standard import RetryContext, RetryEventAdapter, ThrottlingErrorDetector

_THROTTLING = ThrottlingErrorDetector(RetryEventAdapter())


def error_code(exc: Exception) -> str:
    """The AWS error code of a ``ClientError`` (e.g. ``ThrottlingException``), else the
    exception's type name (``EndpointConnectionError``, ``ReadTimeoutError`` ...)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


# Outside Lambda (chalice local, a script) these are what a missing environment looks like.
LOCAL_HINT = (
    "locally: start `make run` and load the environment it writes "
    "(set -a; . .chalice/local.env; set +a) before `chalice local`"
)


@dataclass(frozen=True)
class ConfigProblem:
    """What an exception says is missing from the environment, for a clear answer."""

    missing: tuple[str, ...]
    message: str


def config_problem(exc: BaseException | None) -> ConfigProblem | None:
    """The configuration problem behind ``exc`` (or one of its causes), or None.

    botocore raises ``NoRegionError`` building a client without a region,
    ``NoCredentialsError`` signing without credentials, and ``EndpointConnectionError`` when
    nothing listens at the endpoint (a local DynamoDB that is not running)."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, NoRegionError):
            return ConfigProblem(("AWS_REGION",), f"no AWS region is configured; {LOCAL_HINT}")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return ConfigProblem(
                ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
                f"no AWS credentials are configured; {LOCAL_HINT}",
            )
        if isinstance(exc, EndpointConnectionError):
            # Nothing is missing as such: the endpoint (AWS_ENDPOINT_URL_DYNAMODB locally) is
            # set but nothing answers there.
            return ConfigProblem((), f"an AWS endpoint could not be reached; {LOCAL_HINT}")
        exc, seen = exc.__cause__, seen + 1
    return None


def is_throttling(exc: Exception) -> bool:
    """True if botocore's standard retry mode counts ``exc`` as throttling (by its error code:
    ``ThrottlingException``, ``ProvisionedThroughputExceededException``,
    ``LimitExceededException`` ...)."""
    if not isinstance(exc, ClientError):
        return False
    context = RetryContext(attempt_number=1, parsed_response=exc.response)
    return bool(_THROTTLING.is_throttling_error_from_context(context))
