"""API Gateway's WebSocket quotas, as one value the gateway is configured with.

Defaults are AWS's: "Amazon API Gateway quotas for configuring and running a WebSocket API"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html), and botocore's
``apigatewaymanagementapi`` model (``PostToConnection`` ``Data``: max 131072 bytes).
Tests shrink them to see timeouts in seconds instead of minutes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class Quotas:
    """API Gateway's WebSocket quotas; all configurable for tests."""

    max_message_bytes: int = 128 * 1024
    max_frame_bytes: int = 32 * 1024
    max_post_bytes: int = 131072  # botocore's PostToConnection Data max
    idle_timeout: float = 600.0
    max_duration: float = 7200.0
    integration_timeout: float = 29.0
    # Bytes queued for a client that is not reading; past this POST answers 429.
    send_buffer_limit: int = 1024 * 1024
    # How long to wait for the client's half of a close handshake before dropping it.
    close_timeout: float = 3.0
    # The account's request quota over every @connections call (local_gateway/token_bucket.py);
    # None: unlimited, as before. AWS's is 10,000 rps, burst 5,000 (default: half the rate).
    account_rps: float | None = None
    account_burst: float | None = None
    # Not API Gateway quotas but protection of the local port (slowloris, idle sockets):
    # a request head must arrive within head_timeout, a keep-alive HTTP connection may sit
    # idle for keepalive_timeout, and at most max_sockets client sockets are open at once.
    head_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_sockets: int = 4096

    @classmethod
    def pop_from(cls, options: dict[str, Any]) -> Quotas:
        """Remove the fields of ``Quotas`` from ``options`` and return them as ``Quotas``.

        For factories that take one flat set of keyword options (test fixtures:
        ``gateway_factory(idle_timeout=0.5, auth_mode="none")``); the rest of ``options``
        stays for ``LocalGateway``.
        """
        names = {f.name for f in fields(cls)}
        return cls(**{name: options.pop(name) for name in list(options) if name in names})
