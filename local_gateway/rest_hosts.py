"""The REST port's ``Host`` allow-list: the WebSocket port's DNS-rebinding defence, on port 8000.

A page on ``attacker.example`` can make its name resolve to 127.0.0.1 after it loaded (DNS
rebinding); the browser then lets it read answers from the local REST API, because to the
browser it is talking to its own origin. Its requests still carry ``Host: attacker.example``:
refusing every ``Host`` that does not name this server (the bound address, 127.0.0.1,
localhost, with or without the port, plus ``--allowed-host``) stops it, as on the WebSocket
port (``server.host_allowed``).

Chalice's local server (``chalice.local.LocalDevServer``, what ``chalice local`` runs) checks
no Host, so the gateway swaps its request handler for one that checks first.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from typing import Any

from chalice.local import ChaliceRequestHandler

from local_gateway.port_guard import ANY, default_hosts

log = logging.getLogger("local_gateway")


class HostCheckingHandler(ChaliceRequestHandler):
    """Chalice's local request handler, answering 403 for a ``Host`` not on the server's list."""

    def _checked_handle(self) -> None:
        allowed: set[str] = getattr(self.server, "allowed_hosts", set())
        host = (self.headers.get("host") or "").strip().lower()
        if ANY in allowed or host in allowed:
            self._generic_handle()
            return
        log.warning("REST API: refused a request for Host %r", host)
        body = json.dumps({"message": "Forbidden"}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = do_OPTIONS = _checked_handle


def guard(dev_server: Any, app: Any, config: Any, host: str, extra: Iterable[str]) -> set[str]:
    """Make ``dev_server`` (a ``LocalDevServer``, already bound) check ``Host``; the list."""
    server = dev_server.server
    port = int(server.server_address[1])
    allowed = {h.lower() for h in extra} | default_hosts(host, port)
    server.allowed_hosts = allowed
    server.RequestHandlerClass = functools.partial(
        HostCheckingHandler, app_object=app, config=config
    )
    return allowed
