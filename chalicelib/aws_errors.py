"""What a failed AWS call was: its error code, and whether AWS was throttling us.

One reading of botocore's ``ClientError`` for every caller. Throttling is botocore's own
judgement (``botocore.retries.standard.ThrottlingErrorDetector``, the detector standard retry
mode backs off with, as ``transport.py`` uses it), not a hand-kept list of codes.
"""

from __future__ import annotations

from botocore.exceptions import ClientError
from botocore.retries.standard import RetryContext, RetryEventAdapter, ThrottlingErrorDetector

_THROTTLING = ThrottlingErrorDetector(RetryEventAdapter())


def error_code(exc: Exception) -> str:
    """The AWS error code of a ``ClientError`` (e.g. ``ThrottlingException``), else the
    exception's type name (``EndpointConnectionError``, ``ReadTimeoutError`` ...)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def is_throttling(exc: Exception) -> bool:
    """True if botocore's standard retry mode counts ``exc`` as throttling (by its error code:
    ``ThrottlingException``, ``ProvisionedThroughputExceededException``,
    ``LimitExceededException`` ...)."""
    if not isinstance(exc, ClientError):
        return False
    context = RetryContext(attempt_number=1, parsed_response=exc.response)
    return bool(_THROTTLING.is_throttling_error_from_context(context))
