"""Error codes and exceptions, the same names and values as the JavaScript client's.

``ErrorCode`` lists the server's codes (docs/PROTOCOL.md, with the permissions issue's
``token_expired``, ``bad_token``, ``unavailable``) and the client's own; ``is_retryable`` says
whether the same request may succeed later without the app changing it (JS: ``isRetryable``,
``ErrorCode`` in ``@switchboard/client``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class ErrorCode(enum.StrEnum):
    # the server's
    BAD_JSON = "bad_json"
    BAD_REQUEST = "bad_request"
    UNKNOWN_ACTION = "unknown_action"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    TOO_LARGE = "too_large"
    RATE_LIMITED = "rate_limited"
    INTERNAL = "internal"
    TOKEN_EXPIRED = "token_expired"
    BAD_TOKEN = "bad_token"
    UNAVAILABLE = "unavailable"
    # the client's
    TIMEOUT = "timeout"
    DISCONNECTED = "disconnected"
    CLOSED = "closed"
    QUEUE_FULL = "queue_full"
    GAVE_UP = "gave_up"
    HANDSHAKE_REFUSED = "handshake_refused"
    HANDSHAKE_FAILED = "handshake_failed"
    RESUME_REFUSED = "resume_refused"
    BAD_FRAME = "bad_frame"
    STORE = "store"


# Worth the same request again later: a limit, a server-side hiccup, a lost connection, an
# expired token (once refreshed, which the client does itself).
_RETRYABLE = frozenset(
    {
        ErrorCode.RATE_LIMITED,
        ErrorCode.INTERNAL,
        ErrorCode.TOKEN_EXPIRED,
        ErrorCode.UNAVAILABLE,
        ErrorCode.TIMEOUT,
        ErrorCode.DISCONNECTED,
        ErrorCode.QUEUE_FULL,
        ErrorCode.HANDSHAKE_FAILED,
    }
)


def is_retryable(code: str) -> bool:
    """Whether a request that failed with ``code`` may succeed if made again later, unchanged."""
    return code in _RETRYABLE


class SwitchboardError(Exception):
    """A request answered with an ``error`` frame, or one of the client's own failures: ``code``
    (an ``ErrorCode`` value), ``frame`` the whole error frame. ``retry_after_ms``: on
    ``rate_limited``, how long the server asks to wait, when it says."""

    def __init__(self, code: str, message: str, frame: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.frame: Mapping[str, Any] = frame or {}
        self.retry_after_ms = retry_after_ms(self.frame)

    @property
    def retryable(self) -> bool:
        return is_retryable(self.code)


class RequestTimeout(SwitchboardError, TimeoutError):
    """No answer within the request timeout. A send that had gone out may still be delivered."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.TIMEOUT, message)


class ClientClosed(SwitchboardError):
    def __init__(self, message: str = "the client is closed") -> None:
        super().__init__(ErrorCode.CLOSED, message)


class QueueFull(SwitchboardError):
    def __init__(self, limit: int) -> None:
        super().__init__(ErrorCode.QUEUE_FULL, f"{limit} sends already wait for the connection")


class ConnectError(ClientClosed):
    """The connection cannot be opened (the client is ``failed``): the handshake was refused
    (``handshake_refused``, with the HTTP ``status`` and the server's ``server_message``), or
    the client gave up after ``attempts`` tries (``gave_up``). A ``ClientClosed`` too, which
    ``connect()`` raised for these before."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        server_message: str | None = None,
        attempts: int = 0,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.args = (f"{code}: {message}",)
        self.status = status
        self.server_message = server_message
        self.attempts = attempts


class ConnectTimeout(SwitchboardError, TimeoutError):
    """``connect(timeout=...)`` ran out while the client still retries in the background."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.TIMEOUT, message)


def retry_after_ms(frame: Mapping[str, Any]) -> int | None:
    """A ``rate_limited`` frame's ``retryAfterMs`` (ms to wait), when it has a usable one."""
    wait = frame.get("retryAfterMs")
    if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
        return None
    return int(wait)


def refusal_is_final(status: int | None) -> bool:
    """HTTP statuses of a refused handshake that no retry with the same credentials mends (a 401
    is retried once when a token callback can give a fresh token; 408, 429, 5xx with backoff)."""
    return status is not None and 400 <= status < 500 and status not in (408, 429)
