"""An asyncio transport for ``@connections`` posts: SigV4-signed keep-alive HTTP/1.1.

Why not boto3 for fan-out: a ``post_to_connection`` call spends about 1 ms of CPU in botocore's
request pipeline, and threads cannot run that in parallel (the GIL), so a fan-out tops out near
1,000 posts/s whatever the pool size. Here each post costs one SigV4 signature (~15 us: see
``PostSigner``) and a few socket operations on one long-lived event loop, and posts are signed
only when a connection is free for them.

What stays botocore's: the clock, key derivation and canonical forms of signing (``SigV4Auth``'s
algorithm, checked against it byte for byte), the retry policy (``StandardRetryConditions`` and
``ExponentialBackoff`` of standard mode, with its throttling detection: ``LimitExceededException``
/ 429 and transient 5xx are retried with jittered backoff), and the error codes (the
``x-amzn-ErrorType`` header). Not used: standard mode's retry quota, a circuit breaker meant for
one client hammering a failing service; in a fan-out it would let a burst of throttles on some
recipients starve the retries of all the others.

The loop runs in a daemon thread per container; a Lambda freeze pauses it with the process, and
keep-alive connections found dead after a thaw are reopened without costing an attempt.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import hmac
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from botocore import auth as botocore_auth
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.loaders import create_loader
from botocore.model import ServiceModel
from botocore.retries.standard import (
    ExponentialBackoff,
    RetryContext,
    RetryEventAdapter,
    StandardRetryConditions,
    ThrottlingErrorDetector,
)
from botocore.utils import normalize_url_path

MAX_HEADER_LINES = 100


@dataclass
class HttpResponse:
    """The parts of a response the retry checkers read (``status_code``, ``headers``)."""

    status_code: int
    headers: dict[str, str]
    content: bytes = b""

    def error_code(self) -> str | None:
        if self.status_code < 300:
            return None
        header = self.headers.get("x-amzn-errortype")
        if header:
            return header.split(":", 1)[0].strip()
        return None


@dataclass
class _Endpoint:
    url: str
    host: str
    port: int
    tls: bool
    base_path: str
    host_header: str
    origin: str
    region: str | None
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    slots: asyncio.Semaphore | None = None


def _region_from_host(host: str) -> str | None:
    # {api-id}.execute-api.{region}.amazonaws.com[.cn]
    parts = host.split(".")
    if len(parts) >= 4 and parts[1] == "execute-api":
        return parts[2]
    return None


class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before answering."""


def post_operation_model() -> Any:
    """botocore's model of PostToConnection: its retry checkers look at the modeled errors."""
    loader = create_loader()
    model = ServiceModel(loader.load_service_model("apigatewaymanagementapi", "service-2"))
    return model.operation_model("PostToConnection")


class PostSigner:
    """SigV4 for ``@connections`` requests: botocore's ``SigV4Auth`` algorithm, minus its
    per-request overhead.

    ``SigV4Auth.add_auth`` costs ~100 us per post (an ``AWSRequest``, three URL parses, header
    maps, the body's SHA-256 and four HMACs to derive the signing key), which made signing
    half of a fan-out's CPU. Every post of a fan-out has the same shape: a path without a
    query string, the same body and the signed headers ``host;x-amz-date`` (plus
    ``x-amz-security-token`` with temporary credentials). So the body hash is computed once
    per payload and the signing key once per day and region; a post costs its canonical
    request, one SHA-256 and one HMAC. The clock is botocore's (``get_current_datetime``),
    and the unit tests check the result against ``SigV4Auth`` byte for byte.
    """

    service = "execute-api"

    def __init__(self) -> None:
        self._body: bytes | None = None
        self._body_hash = ""
        self._keys: dict[tuple[str, str, str], bytes] = {}

    def _payload_hash(self, data: bytes) -> str:
        if data is not self._body:
            self._body_hash = hashlib.sha256(data).hexdigest()
            self._body = data
        return self._body_hash

    def _signing_key(self, secret: str, date: str, region: str) -> bytes:
        key = self._keys.get((secret, date, region))
        if key is None:
            key = f"AWS4{secret}".encode()
            for part in (date, region, self.service, "aws4_request"):
                key = hmac.new(key, part.encode("utf-8"), hashlib.sha256).digest()
            if len(self._keys) > 16:
                self._keys.clear()
            self._keys[(secret, date, region)] = key
        return key

    def headers(
        self, frozen: Any, region: str, method: str, host: str, path: str, data: bytes
    ) -> dict[str, str]:
        timestamp = botocore_auth.get_current_datetime().strftime(SIGV4_TIMESTAMP)
        date = timestamp[:8]
        token = frozen.token
        canonical_headers = f"host:{host}\nx-amz-date:{timestamp}\n"
        signed_headers = "host;x-amz-date"
        if token:
            canonical_headers += f"x-amz-security-token:{' '.join(token.split())}\n"
            signed_headers += ";x-amz-security-token"
        canonical_request = "\n".join(
            (
                method.upper(),
                quote(normalize_url_path(path), safe="/~"),
                "",
                canonical_headers,
                signed_headers,
                self._payload_hash(data),
            )
        )
        scope = f"{date}/{region}/{self.service}/aws4_request"
        string_to_sign = (
            f"AWS4-HMAC-SHA256\n{timestamp}\n{scope}\n"
            + hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
        )
        signature = hmac.new(
            self._signing_key(frozen.secret_key, date, region),
            string_to_sign.encode("utf-8"),
            hashlib.sha256,
        ).hexdigest()
        headers = {"X-Amz-Date": timestamp}
        if token:
            headers["X-Amz-Security-Token"] = token
        headers["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        return headers


class AsyncConnectionsTransport:
    """Posts to ``@connections`` from a shared event loop; the methods are called from threads."""

    def __init__(
        self,
        credentials: Any,
        region: str | None,
        max_connections: int = 64,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 3,
        operation_model: Any = None,
    ) -> None:
        self._credentials = credentials
        self._region = region
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._operation_model = operation_model or post_operation_model()
        self._conditions = StandardRetryConditions(max_attempts=max_attempts)
        self._backoff = ExponentialBackoff(
            service_name="apigatewaymanagementapi",
            throttling_detector=ThrottlingErrorDetector(RetryEventAdapter()),
        )
        self._endpoints: dict[str, _Endpoint] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._signer = PostSigner()

    # --- thread-side API ------------------------------------------------------------------

    def post_many(
        self, items: Sequence[tuple[str, str]], data: bytes
    ) -> list[HttpResponse | Exception]:
        """POST ``data`` to each ``(endpoint, connection_id)``; results in the same order."""
        return self.submit_many(items, data).result()

    def submit_many(
        self, items: Sequence[tuple[str, str]], data: bytes
    ) -> concurrent.futures.Future[list[HttpResponse | Exception]]:
        """Start posting and return at once; the future holds the results in order."""
        if not items:
            done: concurrent.futures.Future[list[HttpResponse | Exception]] = (
                concurrent.futures.Future()
            )
            done.set_result([])
            return done
        return asyncio.run_coroutine_threadsafe(self._post_many(items, data), self._ensure_loop())

    def close(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    thread = threading.Thread(
                        target=loop.run_forever, name="connections-transport", daemon=True
                    )
                    thread.start()
                    self._loop = loop
        return self._loop

    # --- loop-side ------------------------------------------------------------------------

    async def _post_many(
        self, items: Sequence[tuple[str, str]], data: bytes
    ) -> list[HttpResponse | Exception]:
        # Credentials may be refreshed between fan-outs; freeze them once per fan-out.
        frozen = self._credentials.get_frozen_credentials()
        return await asyncio.gather(
            *(self._post_one(endpoint, cid, data, frozen) for endpoint, cid in items)
        )

    async def _post_one(
        self, endpoint_url: str, connection_id: str, data: bytes, frozen: Any
    ) -> HttpResponse | Exception:
        try:
            return await self._send_with_retries(endpoint_url, connection_id, data, frozen)
        except Exception as exc:  # noqa: BLE001 - one broken post is one failed outcome
            return exc

    async def _send_with_retries(
        self, endpoint_url: str, connection_id: str, data: bytes, frozen: Any
    ) -> HttpResponse | Exception:
        endpoint = self._endpoint(endpoint_url)
        path = f"{endpoint.base_path}/@connections/{quote(connection_id, safe='')}"
        attempt = 0
        while True:
            attempt += 1
            response: HttpResponse | None = None
            error: Exception | None = None
            try:
                response = await self._send(endpoint, "POST", path, data, frozen)
            except Exception as exc:  # noqa: BLE001 - judged by botocore's retry conditions
                error = exc
            code = response.error_code() if response is not None else None
            context = RetryContext(
                attempt_number=attempt,
                operation_model=self._operation_model,
                parsed_response={"Error": {"Code": code}} if code else None,
                http_response=response,
                caught_exception=error,
            )
            if (response is not None and response.status_code < 300) or not (
                self._conditions.is_retryable(context)
            ):
                return response if response is not None else error  # type: ignore[return-value]
            await asyncio.sleep(self._backoff.delay_amount(context))

    def _endpoint(self, url: str) -> _Endpoint:
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            split = urlsplit(url)
            tls = split.scheme == "https"
            host = split.hostname or ""
            port = split.port or (443 if tls else 80)
            default_port = (tls and port == 443) or (not tls and port == 80)
            endpoint = _Endpoint(
                url=url.rstrip("/"),
                host=host,
                port=port,
                tls=tls,
                base_path=split.path.rstrip("/"),
                host_header=host if default_port else f"{host}:{port}",
                origin=f"{split.scheme}://{host if default_port else f'{host}:{port}'}",
                region=_region_from_host(host) or self._region,
                slots=asyncio.Semaphore(self._max_connections),
            )
            self._endpoints[url] = endpoint
        return endpoint

    def _sign(
        self, endpoint: _Endpoint, method: str, path: str, data: bytes, frozen: Any
    ) -> dict[str, str]:
        region = endpoint.region or "us-east-1"
        if "?" in path:  # never for @connections; botocore's signer handles query strings
            request = AWSRequest(method=method, url=endpoint.origin + path, data=data)
            SigV4Auth(frozen, "execute-api", region).add_auth(request)
            return dict(request.headers.items())
        return self._signer.headers(frozen, region, method, endpoint.host_header, path, data)

    async def _send(
        self, endpoint: _Endpoint, method: str, path: str, data: bytes, frozen: Any
    ) -> HttpResponse:
        assert endpoint.slots is not None
        async with endpoint.slots:
            # Signed only once a connection slot is ours: signing every queued post up front
            # would spend the CPU of the whole fan-out before the first answer is read.
            headers = self._sign(endpoint, method, path, data, frozen)
            head = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.host_header}"]
            head += [
                f"{name}: {value}" for name, value in headers.items() if name.lower() != "host"
            ]
            head.append(f"Content-Length: {len(data)}")
            payload = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data
            while endpoint.idle:
                reader, writer = endpoint.idle.pop()
                try:
                    return await self._exchange(endpoint, reader, writer, payload, reused=True)
                except _StaleConnection:
                    continue
            reader, writer = await self._open(endpoint)
            return await self._exchange(endpoint, reader, writer, payload, reused=False)

    async def _open(self, endpoint: _Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        context = None
        if endpoint.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            return await asyncio.wait_for(
                asyncio.open_connection(
                    endpoint.host,
                    endpoint.port,
                    ssl=context,
                    server_hostname=endpoint.host if context else None,
                ),
                self._connect_timeout,
            )
        except OSError as exc:  # TimeoutError included
            raise EndpointConnectionError(endpoint_url=endpoint.url, error=exc) from None

    async def _exchange(
        self,
        endpoint: _Endpoint,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        payload: bytes,
        reused: bool,
    ) -> HttpResponse:
        try:
            writer.write(payload)
            await writer.drain()
            # asyncio.timeout, not wait_for: wait_for wraps each read in a Task of its own.
            async with asyncio.timeout(self._read_timeout):
                status_line = await reader.readline()
            if not status_line:
                raise ConnectionResetError("connection closed before the response")
            async with asyncio.timeout(self._read_timeout):
                response = await self._read_rest(reader, status_line)
        except TimeoutError:  # before OSError: TimeoutError is one
            writer.close()
            raise ReadTimeoutError(endpoint_url=endpoint.url) from None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            writer.close()
            if reused:
                raise _StaleConnection() from exc
            raise EndpointConnectionError(endpoint_url=endpoint.url, error=exc) from None
        if response.headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            endpoint.idle.append((reader, writer))
        return response

    @staticmethod
    async def _read_rest(reader: asyncio.StreamReader, status_line: bytes) -> HttpResponse:
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise ValueError(f"not an HTTP/1.x response: {status_line[:40]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise ValueError("too many response headers")
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int((await reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readline()
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            return HttpResponse(status, headers, bytes(body))
        if "content-length" in headers:
            length = int(headers["content-length"])
            content = await reader.readexactly(length) if length else b""
        elif headers.get("connection", "").lower() == "close" and status not in (204, 304):
            content = await reader.read()
        else:
            content = b""
        return HttpResponse(status, headers, content)
