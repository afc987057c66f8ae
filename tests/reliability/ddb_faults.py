"""A DynamoDB endpoint that throttles: an HTTP proxy in front of the embedded DynamoDB.

The local gateway injects faults into ``@connections`` only. For DynamoDB, the app's
``AWS_ENDPOINT_URL_DYNAMODB`` points here (``LocalGateway(dynamodb_endpoint=proxy.url)``);
each request names its operation in ``X-Amz-Target`` (``DynamoDB_20120810.Query``), and a
configurable share of the chosen operations is answered the way DynamoDB throttles:
HTTP 400 with ``__type`` ``...#ProvisionedThroughputExceededException``. botocore's standard
retry mode sees a throttling error, backs off and retries, as it would against AWS; the rest
is forwarded unchanged. 127.0.0.1 only.
"""

from __future__ import annotations

import collections
import http.client
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

THROTTLED_BODY = json.dumps(
    {
        "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        "message": "The level of configured provisioned throughput for the table was exceeded.",
    }
).encode()
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class ThrottlingProxy:
    """``proxy.throttle({"Query": 0.5, "GetItem": 1.0})`` throttles those operations at those
    rates until changed; ``proxy.throttle({})`` stops. ``counts`` has forwarded/throttled
    requests per operation.
    """

    def __init__(self, upstream: str, seed: int = 1) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname == "127.0.0.1", "the proxy only forwards to 127.0.0.1"
        self.upstream = (parts.hostname, parts.port or 80)
        self._rates: dict[str, float] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()
        self._local = threading.local()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def throttle(self, rates: dict[str, float]) -> None:
        with self._lock:
            self._rates = dict(rates)

    def _throttled(self, operation: str) -> bool:
        with self._lock:
            rate = self._rates.get(operation, self._rates.get("*", 0.0))
            hit = rate > 0 and self._rng.random() < rate
            self.counts[f"{operation}:{'throttled' if hit else 'forwarded'}"] += 1
            return hit

    def throttled(self) -> int:
        with self._lock:
            return sum(n for key, n in self.counts.items() if key.endswith(":throttled"))

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(*self.upstream, timeout=30)
            self._local.conn = conn
        return conn

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        for attempt in range(2):  # a kept-alive upstream connection may have been closed
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.getheaders(), response.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rpartition(".")[2]
                if operation and proxy._throttled(operation):
                    status, headers, payload = (
                        400,
                        [("Content-Type", "application/x-amz-json-1.0")],
                        THROTTLED_BODY,
                    )
                else:
                    forward = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                    status, headers, payload = proxy.forward(self.command, self.path, forward, body)
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_GET = _handle  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="ddb-throttling-proxy",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
