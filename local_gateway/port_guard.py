"""Protection of the port the local gateway listens on, a developer's machine: beyond what API
Gateway does, it refuses (403) a ``Host`` that is not the bound address (DNS rebinding) and a
handshake whose ``Origin`` is not allow-listed, and logs accept() failures for lack of
descriptors at a bounded rate. (Sockets that send no request head in time, sit idle between
keep-alive requests or exceed the socket cap are dropped by ``server.WebSocketServer``.)
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from typing import Any

from local_gateway.http11 import HttpRequest

log = logging.getLogger("local_gateway")

ANY = "*"
# What accept() fails with when the process or the system runs out of descriptors/memory.
_RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def default_hosts(host: str, port: int) -> set[str]:
    """``Host`` values that name the bound address: itself, 127.0.0.1 and localhost, with
    the bound port or none."""
    names = {f"[{name}]" if ":" in name else name for name in (host, "127.0.0.1", "localhost")}
    return names | {f"{name}:{port}" for name in names}


def host_allowed(request: HttpRequest, allowed: set[str]) -> bool:
    """Whether ``Host`` names this server: a rebinding page's requests carry its own name."""
    host = (request.header("host") or "").strip().lower()
    return ANY in allowed or host in allowed


def origin_allowed(request: HttpRequest, allowed: set[str]) -> bool:
    """Whether a handshake may come from ``Origin``: clients that send none (non-browsers)
    always may; browsers only from allow-listed pages."""
    origin = request.header("origin")
    return origin is None or ANY in allowed or origin.strip().lower() in allowed


class AcceptErrorLog:
    """Logs accept() failures for lack of descriptors at most once per ``interval`` seconds.

    asyncio retries a failed accept every second and logs each failure with a traceback;
    with hundreds of sockets waiting that floods the log exactly when it matters.
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.suppressed = 0
        self._last: float | None = None

    def handles(self, context: dict[str, Any]) -> bool:
        exc = context.get("exception")
        return isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS

    def record(self, context: dict[str, Any]) -> None:
        now = self.clock()
        if self._last is not None and now - self._last < self.interval:
            self.suppressed += 1
            return
        log.warning(
            "cannot accept connections: %s (%d more in the last %.0f s); "
            "raise the descriptor limit (ulimit -n) or lower --max-sockets",
            context.get("exception"),
            self.suppressed,
            self.interval,
        )
        self._last = now
        self.suppressed = 0
