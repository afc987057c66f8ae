"""The @connections management API as request -> response functions, without sockets.

``POST|GET|DELETE /{stage}/@connections/{connectionId}`` as described in "Use @connections
commands in your backend service"
(https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-how-to-call-websocket-api-connections.html).
Error statuses and types follow botocore's ``apigatewaymanagementapi/2018-11-29/service-2.json``
(GoneException 410, PayloadTooLargeException 413, LimitExceededException 429,
ForbiddenException 403); the type travels in ``x-amzn-ErrorType``, which botocore turns
into ``client.exceptions.*``. The server (``local_gateway/server.py``) parses the HTTP
request and writes the ``Response``; everything between is here, so tests can drive it
with a fake connection.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from local_gateway.faults import FaultInjector, PostFault
from local_gateway.http11 import HttpRequest
from local_gateway.lambda_events import ClientInfo, iso8601
from local_gateway.quotas import Quotas
from local_gateway.sigv4 import SignatureError, SigV4Verifier
from local_gateway.stats import GatewayStats
from local_gateway.token_bucket import TokenBucket

JSON = "application/json"

# The close reason (and so $disconnect's disconnectReason) after DeleteConnection on AWS,
# as observed by the audit in this project's issue #17 (public captures).
DELETE_CLOSE_REASON = "Connection Closed Normally"


class Connection(Protocol):
    """What the management API needs of an open WebSocket (``ClientSocket`` in the server)."""

    @property
    def info(self) -> ClientInfo: ...

    @property
    def is_open(self) -> bool: ...

    @property
    def last_active_ms(self) -> int: ...

    def buffered_bytes(self) -> int: ...

    def send(self, payload: bytes) -> bool: ...

    def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True)
class Response:
    """An HTTP answer before serialization."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def json_body(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def error_response(status: int, error_type: str, message: str, request_id: str) -> Response:
    return Response(
        status,
        [
            ("Content-Type", JSON),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", error_type),
        ],
        json_body({"message": message}),
    )


def _new_request_id() -> str:
    return str(uuid.uuid4())


@dataclass
class ConnectionsApi:
    """Answers management API requests for one stage's open connections."""

    stage: str
    connections: Mapping[str, Connection]
    # A custom domain name mapped to this stage, and its API mapping's path ("" = the root).
    custom_domain: str | None = None
    base_path: str = ""
    limits: Quotas = field(default_factory=Quotas)
    faults: FaultInjector = field(default_factory=FaultInjector)
    stats: GatewayStats = field(default_factory=GatewayStats)
    request_id_factory: Callable[[], str] = _new_request_id
    # The account quota shared by every caller; built from ``limits.account_rps`` if not given.
    quota: TokenBucket | None = None

    def __post_init__(self) -> None:
        if self.quota is None and self.limits.account_rps is not None:
            self.quota = TokenBucket(self.limits.account_rps, self.limits.account_burst)

    # Checks each call's SigV4 signature against the app's credentials; None checks only
    # that one is present (unit tests of the routing).
    verifier: SigV4Verifier | None = None

    async def handle(self, request: HttpRequest) -> Response:
        """Route, authenticate, add the injected latency, then act on the connection."""
        request_id = self.request_id_factory()
        target = self.target(request, request_id)
        if isinstance(target, Response):
            return target
        if self.quota is not None and not self.quota.try_take():
            # POST, GET and DELETE all spend the account's quota (local_gateway/token_bucket.py).
            self.stats.quota_throttled += 1
            return error_response(429, "LimitExceededException", "Rate exceeded", request_id)
        delay = self.faults.latency_seconds()
        if delay:
            await asyncio.sleep(delay)
        return self.respond(request.method, target, request.body, request_id)

    def target(self, request: HttpRequest, request_id: str) -> str | Response:
        """The connection id the request is for, or the 403 refusing it."""
        prefix = self.path_prefix(request.header("host"))
        parts = request.path.split("/")
        if (
            len(parts) != len(prefix) + 3
            or [unquote(p) for p in parts[1 : len(prefix) + 1]] != prefix
            or unquote(parts[-2]) != "@connections"
            or not parts[-1]
        ):
            return self.forbidden("Forbidden", request_id)
        if not (request.header("authorization") or "").startswith("AWS4-HMAC-SHA256 "):
            # API Gateway rejects unsigned calls before looking at anything else.
            return self.forbidden("Missing Authentication Token", request_id)
        if self.verifier is not None:
            url = f"http://{request.header('host') or ''}{request.target}"
            try:
                self.verifier.verify(request.method, url, request.headers, request.body)
            except SignatureError as exc:
                # AWS answers a bad or unknown signature on execute-api with 403 and the
                # common error type in x-amzn-ErrorType (see local_gateway/sigv4.py).
                self.stats.forbidden += 1
                return error_response(403, exc.error_type, exc.message, request_id)
        return unquote(parts[-1])

    def path_prefix(self, host: str | None) -> list[str]:
        """The path segments before ``@connections`` for a request to ``host``.

        The execute-api host (here: any host but the custom domain, e.g. ``127.0.0.1:8001``)
        serves ``/{stage}/@connections`` ("Use @connections commands in your backend service":
        ``https://{api-id}.execute-api.{region}.amazonaws.com/{stage}/@connections/{id}``).
        A custom domain serves its API mapping's path instead, which need not be the stage
        ("Map API stages to a custom domain name for WebSocket APIs"; the management API's
        reference: "the endpoint corresponding to your API's custom domain and base path"), so
        ``https://{domain}/{stage}/@connections`` is refused there unless the two agree.
        """
        name = (host or "").rsplit(":", 1)[0].strip().lower().rstrip(".")
        if self.custom_domain and name == self.custom_domain.lower():
            return self.base_path.split("/") if self.base_path else []
        return [self.stage]

    def respond(self, method: str, connection_id: str, body: bytes, request_id: str) -> Response:
        conn = self.connections.get(connection_id)
        if method == "POST":
            return self.post(conn, body, request_id)
        if method == "GET":
            return self.get(conn, request_id)
        if method == "DELETE":
            return self.delete(conn, request_id)
        return self.forbidden("Forbidden", request_id)

    def post(self, conn: Connection | None, body: bytes, request_id: str) -> Response:
        """PostToConnection: deliver ``body`` as one message."""
        stats = self.stats
        stats.posts += 1
        fault = self.faults.draw_post_fault()
        if fault is PostFault.THROTTLE:
            stats.throttled += 1
            return error_response(429, "LimitExceededException", "Rate exceeded", request_id)
        if fault is PostFault.ERROR:
            stats.injected_errors += 1
            return error_response(
                500, "InternalServerErrorException", "Internal server error", request_id
            )
        if len(body) > self.limits.max_post_bytes:
            stats.too_large += 1
            return error_response(
                413, "PayloadTooLargeException", "Request entity too large", request_id
            )
        if conn is None or not conn.is_open:
            return self.gone(request_id)
        if conn.buffered_bytes() > self.limits.send_buffer_limit:
            # The client is not reading: API Gateway's "client side buffer is full".
            stats.throttled += 1
            return error_response(
                429, "LimitExceededException", "Client buffer is full", request_id
            )
        conn.send(body)
        stats.posts_ok += 1
        return Response(200, [("Content-Type", JSON), ("x-amzn-RequestId", request_id)])

    def get(self, conn: Connection | None, request_id: str) -> Response:
        """GetConnection: when it connected, who it is, when it was last active."""
        self.stats.gets += 1
        if conn is None or not conn.is_open:
            return self.gone(request_id)
        info = conn.info
        # The wire names are lower camel case; botocore maps them to ConnectedAt etc.
        return Response(
            200,
            [("Content-Type", JSON), ("x-amzn-RequestId", request_id)],
            json_body(
                {
                    "connectedAt": iso8601(info.connected_at_ms),
                    "identity": {"sourceIp": info.source_ip, "userAgent": info.user_agent},
                    "lastActiveAt": iso8601(conn.last_active_ms),
                }
            ),
        )

    def delete(self, conn: Connection | None, request_id: str) -> Response:
        """DeleteConnection: close the socket with 1000 and answer 204 at once."""
        self.stats.deletes += 1
        if conn is None or not conn.is_open:
            return self.gone(request_id)
        conn.close(1000, DELETE_CLOSE_REASON)
        return Response(204, [("x-amzn-RequestId", request_id)])

    def gone(self, request_id: str) -> Response:
        self.stats.gone += 1
        return error_response(410, "GoneException", "", request_id)

    def forbidden(self, message: str, request_id: str) -> Response:
        self.stats.forbidden += 1
        return error_response(403, "ForbiddenException", message, request_id)
