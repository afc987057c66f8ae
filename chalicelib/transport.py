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

HTTP/1.1 framing is h11's (one ``h11.Connection`` per pooled socket): a 1xx is not the answer,
a connection goes back to the pool only when h11 says the exchange is complete and keep-alive,
and a response body over ``MAX_RESPONSE_BODY`` fails the post instead of filling memory.

Pacing (``rate_control.py``): with an ``AimdRate``, every attempt waits for its turn at a rate
learnt from 429s, so concurrent fan-outs share the account's quota instead of storming it. Only
429s the ``ThrottleJudge`` attributes to the quota count; a connection that answers 429 again
(its own full buffer) is given up on for the fan-out instead of retried (``throttle_judge.py``).

The loop runs in a daemon thread per container; a Lambda freeze pauses it with the process.
A keep-alive connection found dead (closed or reset before any byte of the answer was read)
is retried on a new connection without costing an attempt, once per post: that failure also
looks like a server that took the post and closed without answering, so a post arrives at
most once more than its attempts. Any other failure after the request was sent is an attempt.
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

import h11
from botocore import auth as botocore_auth
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import (
    ConnectionClosedError,
    EndpointConnectionError,
    ReadTimeoutError,
)
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

from chalicelib.rate_control import AimdRate, Pacer
from chalicelib.throttle_judge import ThrottleJudge

# API Gateway's error bodies are a one-line JSON message; a body past this is not an answer
# from @connections, and buffering it would let one response take the container's memory.
MAX_RESPONSE_BODY = 64 * 1024
READ_CHUNK = 64 * 1024
_END_OF_MESSAGE = h11.EndOfMessage()


class ResponseTooLarge(Exception):
    """A response body over ``MAX_RESPONSE_BODY``: the post fails, and is not retried (it is
    none of botocore's retryable errors; the post may well have arrived)."""

    def __init__(self, endpoint_url: str, size: int) -> None:
        super().__init__(f"response from {endpoint_url} exceeds {MAX_RESPONSE_BODY} bytes")
        self.size = size


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
    idle: list[_Connection] = field(default_factory=list)
    slots: asyncio.Semaphore | None = None
    framing: _Framing | None = None  # the last one built (a fan-out posts one body)


@dataclass
class _Framing:
    """The request h11 is told was sent for a body (``AsyncConnectionsTransport._framing``)."""

    method: str
    body: bytes
    request: h11.Request
    body_event: h11.Data


@dataclass
class _Connection:
    """One pooled socket and the HTTP/1.1 state machine (h11) that frames what crosses it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    http: h11.Connection = field(default_factory=lambda: h11.Connection(our_role=h11.CLIENT))
    reused: bool = False  # it has carried a full exchange and sat idle in the pool since


def _region_from_host(host: str) -> str | None:
    # {api-id}.execute-api.{region}.amazonaws.com[.cn]
    parts = host.split(".")
    if len(parts) >= 4 and parts[1] == "execute-api":
        return parts[2]
    return None


class _StaleConnection(Exception):
    """A reused keep-alive connection failed before any byte of the answer was read."""


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
        rate: AimdRate | None = None,
        judge: ThrottleJudge | None = None,
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
        # AIMD pacing against the account's @connections quota (rate_control.py); None:
        # posts go out as fast as the pool allows.
        self._pacer = Pacer(rate) if rate is not None else None
        # Whose 429 it is: the quota's, or one non-reading client's (throttle_judge.py).
        self._judge = judge if judge is not None else ThrottleJudge()

    @property
    def rate(self) -> AimdRate | None:
        return self._pacer.rate if self._pacer is not None else None

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
        free_retry = True
        fresh = False
        while True:
            response: HttpResponse | None = None
            error: Exception | None = None
            # Every attempt waits for the pacer, retries of a 429 included.
            sent_at = await self._pacer.acquire() if self._pacer is not None else 0.0
            self._judge.posted(connection_id)
            try:
                response = await self._send(endpoint, "POST", path, data, frozen, fresh)
            except _StaleConnection as exc:
                # A keep-alive connection the server closed while it sat idle (after a Lambda
                # thaw, all of them): once per post, on a new connection, without an attempt.
                # Indistinguishable from a server that took the post and closed without a
                # word, hence once: a post arrives at most once more than its attempts.
                if free_retry:
                    free_retry = False
                    fresh = True
                    continue
                error = ConnectionClosedError(endpoint_url=endpoint.url)
                error.__cause__ = exc.__cause__
            except Exception as exc:  # noqa: BLE001 - judged by botocore's retry conditions
                error = exc
            attempt += 1
            fresh = False
            code = response.error_code() if response is not None else None
            if response is not None and self._observe(response, code, sent_at, connection_id):
                return response  # this connection's own full buffer again: not retried
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

    def _observe(
        self, response: HttpResponse, code: str | None, sent_at: float, connection_id: str
    ) -> bool:
        """Feed the pacing; True when the post is to be given up (not retried)."""
        if response.status_code < 300:
            self._judge.delivered(connection_id)
            if self._pacer is not None:
                self._pacer.rate.on_success()
            return False
        if code == "LimitExceededException" or (code is None and response.status_code == 429):
            # The account's quota or this client's full buffer (throttle_judge.py): only a
            # 429 spread across connections slows every fan-out down.
            verdict = self._judge.throttled(connection_id)
            if verdict.quota and self._pacer is not None:
                self._pacer.rate.on_throttle(sent_at)
            return verdict.give_up
        return False

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
        self,
        endpoint: _Endpoint,
        method: str,
        path: str,
        data: bytes,
        frozen: Any,
        fresh: bool = False,
    ) -> HttpResponse:
        assert endpoint.slots is not None
        async with endpoint.slots:
            # Signed only once a connection slot is ours: signing every queued post up front
            # would spend the CPU of the whole fan-out before the first answer is read.
            head = [f"{method} {path} HTTP/1.1", f"Host: {endpoint.host_header}"]
            head += [
                f"{name}: {value}"
                for name, value in self._sign(endpoint, method, path, data, frozen).items()
                if name.lower() != "host"
            ]
            head.append(f"Content-Length: {len(data)}\r\n\r\n")
            payload = "\r\n".join(head).encode("latin-1") + data
            connection = None if fresh else self._take_idle(endpoint)
            if connection is None:
                connection = await self._open(endpoint)
            return await self._exchange(
                endpoint, connection, self._framing(endpoint, method, data), payload
            )

    def _framing(self, endpoint: _Endpoint, method: str, data: bytes) -> _Framing:
        """What h11 is told was sent, built once per endpoint, method and body.

        The request bytes are ours (``_send``: a head of our signed headers, then the body), as
        they were before h11; h11 frames the answer. For that its client state machine must
        have sent a request, and what it reads from one is only what frames the answer: the
        method (HEAD or CONNECT would change it), the HTTP version, ``Connection: close`` and
        ``Expect``. Building an ``h11.Request`` validates every header (~12 us) and
        serialising it costs as much again: per post, that was a third of the transport's CPU.
        So h11 gets one validated request per endpoint with the same framing (method, Host,
        Content-Length) and the body as one ``Data`` event; the bytes it would send are
        dropped (``send_with_data_passthrough`` copies nothing).
        """
        framing = endpoint.framing
        if framing is None or framing.method != method or framing.body is not data:
            request = h11.Request(
                method=method,
                target=f"{endpoint.base_path}/@connections",
                headers=[("Host", endpoint.host_header), ("Content-Length", str(len(data)))],
            )
            framing = _Framing(method, data, request, h11.Data(data=data))
            endpoint.framing = framing
        return framing

    @staticmethod
    def _take_idle(endpoint: _Endpoint) -> _Connection | None:
        while endpoint.idle:
            connection = endpoint.idle.pop()
            # Closed or reset by the server while idle (already seen by the loop): no need to
            # spend a request, or the post's one free retry, to find out.
            reader = connection.reader
            if not reader.at_eof() and reader.exception() is None:
                return connection
            connection.writer.close()
        return None

    async def _open(self, endpoint: _Endpoint) -> _Connection:
        context = None
        if endpoint.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            reader, writer = await asyncio.wait_for(
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
        return _Connection(reader, writer)

    async def _exchange(
        self, endpoint: _Endpoint, connection: _Connection, framing: _Framing, payload: bytes
    ) -> HttpResponse:
        http = connection.http
        reader = connection.reader
        response: h11.Response | None = None
        body = bytearray()
        received = False  # no byte of the answer read: the request may never have arrived
        try:
            http.send_with_data_passthrough(framing.request)
            http.send_with_data_passthrough(framing.body_event)
            http.send_with_data_passthrough(_END_OF_MESSAGE)
            connection.writer.write(payload)
            # asyncio.timeout, not wait_for: wait_for wraps the exchange in a Task of its own.
            async with asyncio.timeout(self._read_timeout):
                await connection.writer.drain()
                # Nothing of this answer can be buffered yet (a pooled connection has no
                # trailing bytes): read first, then ask h11 for events.
                event: h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED] = h11.NEED_DATA
                while True:
                    if event is h11.NEED_DATA:
                        chunk = await reader.read(READ_CHUNK)
                        if not chunk and not received:
                            raise ConnectionResetError("closed before the answer")
                        received = True
                        # b"" is EOF: h11 ends a close-delimited body with it, or raises.
                        http.receive_data(chunk)
                    elif isinstance(event, h11.Response):
                        response = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > MAX_RESPONSE_BODY:
                            raise ResponseTooLarge(endpoint_url=endpoint.url, size=len(body))
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif not isinstance(event, h11.InformationalResponse):
                        # A 1xx (an unasked-for "100 Continue") is not the answer, but the
                        # answer follows it; ConnectionClosed or PAUSED here means it never will.
                        raise h11.RemoteProtocolError(f"unexpected {type(event).__name__}")
                    event = http.next_event()
        except TimeoutError:  # before OSError: TimeoutError is one
            connection.writer.close()
            raise ReadTimeoutError(endpoint_url=endpoint.url) from None
        except OSError as exc:
            connection.writer.close()
            if connection.reused and not received:
                raise _StaleConnection() from exc
            raise ConnectionClosedError(endpoint_url=endpoint.url) from exc
        except h11.RemoteProtocolError as exc:  # truncated or malformed: it may have arrived
            connection.writer.close()
            raise ConnectionClosedError(endpoint_url=endpoint.url) from exc
        except ResponseTooLarge:
            connection.writer.close()
            raise
        assert response is not None  # h11 ends a message only after its head
        if http.their_state is h11.DONE and not http.trailing_data[0]:
            http.start_next_cycle()
            connection.reused = True
            endpoint.idle.append(connection)
        else:  # "Connection: close", or bytes past the answer that belong to no request
            connection.writer.close()
        return HttpResponse(
            response.status_code,
            {name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers},
            bytes(body),
        )
