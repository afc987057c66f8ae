"""Counters of what the gateway did, for tests and benchmarks (``LocalGateway.stats()``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GatewayStats:
    """Event counts since start; touched only on the gateway's event loop."""

    connects: int = 0
    refused: int = 0  # $connect refused the handshake
    disconnects: int = 0
    messages_in: int = 0  # data messages delivered to $default
    posts: int = 0  # @connections POSTs, whatever their outcome
    posts_ok: int = 0
    gone: int = 0  # 410 on POST, GET or DELETE
    throttled: int = 0  # 429: injected, or the client's buffer is full
    quota_throttled: int = 0  # 429: the account quota (--account-rps), any method
    injected_errors: int = 0  # injected 500
    too_large: int = 0  # 413
    forbidden: int = 0  # 403: unsigned, unknown path or method
    gets: int = 0
    deletes: int = 0
    # Filled in by snapshots (LocalGateway.stats()); the live counters leave it 0.
    open_connections: int = 0
