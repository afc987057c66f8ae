"""The API Gateway management API (``@connections``): send to and close connections.

Every call returns a typed outcome instead of raising, so a fan-out can count results. Retries
of throttling (``LimitExceededException``, 429) and transient 5xx errors are botocore's
standard retry mode, not hand-written backoff.

Posts through the async transport are paced by AIMD on 429s (``rate_control.py``) unless
``rate_control="off"``.

Batches (``post_many``) go through the asyncio transport (``transport.py``) by default: one
long-lived event loop and SigV4 signing, several times the throughput of boto3 calls from
threads. ``transport="boto3"`` keeps every call on boto3's client, with a thread pool.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.aws_errors import error_code
from chalicelib.protocol import MAX_PAYLOAD_BYTES
from chalicelib.rate_control import RATE_CONTROLS, AimdRate
from chalicelib.registry import Target

if TYPE_CHECKING:  # imported on the first post: h11 and asyncio are not a cold start's cost
    from chalicelib.transport import AsyncConnectionsTransport, HttpResponse

TRANSPORTS = ("async", "boto3")

Pending = Callable[[], "list[Outcome]"]


class Outcome(enum.Enum):
    DELIVERED = "delivered"  # for close(): closed
    GONE = "gone"  # 410: the connection is closed or never existed
    TOO_LARGE = "too_large"  # 413: not retried
    THROTTLED = "throttled"  # 429 after botocore's retries ran out
    FORBIDDEN = "forbidden"  # 403: wrong endpoint, stage or credentials
    FAILED = "failed"  # anything else (5xx after retries, network errors)


_ERROR_OUTCOMES = {
    "GoneException": Outcome.GONE,
    "PayloadTooLargeException": Outcome.TOO_LARGE,
    "LimitExceededException": Outcome.THROTTLED,
    "ForbiddenException": Outcome.FORBIDDEN,
}
_STATUS_OUTCOMES = {
    410: Outcome.GONE,
    413: Outcome.TOO_LARGE,
    429: Outcome.THROTTLED,
    403: Outcome.FORBIDDEN,
}


def outcome_of(code: str | None, status: int) -> Outcome:
    """The outcome of a management API answer, by error code first, then HTTP status."""
    if status and status < 300:
        return Outcome.DELIVERED
    if code in _ERROR_OUTCOMES:
        return _ERROR_OUTCOMES[code]
    return _STATUS_OUTCOMES.get(status, Outcome.FAILED)


def classify(error: ClientError) -> Outcome:
    code = error_code(error)
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return outcome_of(code, status or 500)


def _response_outcome(result: HttpResponse | Exception) -> Outcome:
    from chalicelib.transport import HttpResponse

    if isinstance(result, HttpResponse):
        return outcome_of(result.error_code(), result.status_code)
    return Outcome.FAILED


class NoEndpoint(ValueError):
    """No management endpoint is configured or known for a connection."""


class ManagementApi:
    """``apigatewaymanagementapi`` clients, one per endpoint, built once and shared by threads.

    The endpoint is ``APIGW_MANAGEMENT_ENDPOINT`` when set (``override``), else the one the
    connection registered with (``https://{domainName}/{stage}`` from its event).
    """

    def __init__(
        self,
        override: str | None = None,
        session: Any = None,
        max_pool_connections: int = 64,
        connect_timeout: float = 2.0,
        read_timeout: float = 5.0,
        max_attempts: int = 3,
        transport: str = "async",
        rate_control: str = "aimd",
        initial_rate: float | None = None,
        max_rate: float = 10000.0,
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
        if rate_control not in RATE_CONTROLS:
            raise ValueError(f"rate_control must be one of {RATE_CONTROLS}, got {rate_control!r}")
        # The async transport's pacing (rate_control.py); boto3's client has none.
        self._rate = (
            (max_rate if initial_rate is None else initial_rate, max_rate)
            if rate_control == "aimd"
            else None
        )
        self._override = override
        self._session = session
        self._transport_kind = transport
        self._transport: AsyncConnectionsTransport | None = None
        self._pool_size = max_pool_connections
        self._timeouts = (connect_timeout, read_timeout)
        self._max_attempts = max_attempts
        self._threads: ThreadPoolExecutor | None = None
        self._config = Config(
            max_pool_connections=max_pool_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
        )
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def endpoint_for(self, stored: str | None) -> str:
        endpoint = self._override or stored
        if not endpoint:
            raise NoEndpoint(
                "no management endpoint: set APIGW_MANAGEMENT_ENDPOINT or connect through the API"
            )
        return endpoint

    def client(self, endpoint: str | None = None) -> Any:
        url = self.endpoint_for(endpoint)
        client = self._clients.get(url)
        if client is None:
            with self._lock:
                client = self._clients.get(url)
                if client is None:
                    session = self._session or boto3.session.Session()
                    client = session.client(
                        "apigatewaymanagementapi", endpoint_url=url, config=self._config
                    )
                    self._clients[url] = client
        return client

    def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        if len(data) > MAX_PAYLOAD_BYTES:
            return Outcome.TOO_LARGE
        if self._transport_kind == "async":
            return self.post_many([Target(connection_id, None, endpoint)], data)[0]
        return self._call("post_to_connection", endpoint, ConnectionId=connection_id, Data=data)

    def post_many(self, targets: Sequence[Target], data: bytes) -> list[Outcome]:
        """Post ``data`` to every target concurrently; outcomes in the targets' order."""
        return self.start_many(targets, data)()

    def start_many(self, targets: Sequence[Target], data: bytes) -> Pending:
        """Start posting ``data`` to every target and return at once.

        Calling the returned function waits for the outcomes (in the targets' order). Batches
        started one after another share the same bounded pool of connections, so a fan-out can
        schedule the next page of targets while the previous one is still being posted.
        """
        if len(data) > MAX_PAYLOAD_BYTES:
            return lambda: [Outcome.TOO_LARGE] * len(targets)
        if self._transport_kind == "boto3":
            pool = self._thread_pool()
            futures = [pool.submit(self.post, t.connection_id, data, t.endpoint) for t in targets]
            return lambda: [f.result() for f in futures]
        outcomes: list[Outcome] = [Outcome.FAILED] * len(targets)
        items: list[tuple[str, str]] = []
        slots: list[int] = []
        for index, target in enumerate(targets):
            try:
                items.append((self.endpoint_for(target.endpoint), target.connection_id))
            except NoEndpoint:
                continue
            slots.append(index)
        transport = self._async_transport()
        if transport is None:
            return lambda: outcomes
        future = transport.submit_many(items, data)

        def wait() -> list[Outcome]:
            for index, result in zip(slots, future.result(), strict=True):
                outcomes[index] = _response_outcome(result)
            return outcomes

        return wait

    def _thread_pool(self) -> ThreadPoolExecutor:
        if self._threads is None:
            with self._lock:
                if self._threads is None:
                    self._threads = ThreadPoolExecutor(
                        max_workers=self._pool_size, thread_name_prefix="post"
                    )
        return self._threads

    def _async_transport(self) -> AsyncConnectionsTransport | None:
        if self._transport is None:
            with self._lock:
                if self._transport is None:
                    from chalicelib.transport import AsyncConnectionsTransport

                    session = self._session or boto3.session.Session()
                    credentials = session.get_credentials()
                    if credentials is None:
                        return None  # nothing can be signed: every post is reported failed
                    self._transport = AsyncConnectionsTransport(
                        credentials,
                        session.region_name,
                        max_connections=self._pool_size,
                        connect_timeout=self._timeouts[0],
                        read_timeout=self._timeouts[1],
                        max_attempts=self._max_attempts,
                        # Passed only when pacing is on: bench/profile_fanout.py swaps in
                        # earlier transports, which take no rate.
                        **({"rate": AimdRate(*self._rate)} if self._rate is not None else {}),  # type: ignore[arg-type]
                    )
        return self._transport

    def close(self, connection_id: str, endpoint: str | None = None) -> Outcome:
        return self._call("delete_connection", endpoint, ConnectionId=connection_id)

    def _call(self, method: str, endpoint: str | None, **kwargs: Any) -> Outcome:
        try:
            getattr(self.client(endpoint), method)(**kwargs)
        except ClientError as exc:
            return classify(exc)
        except (BotoCoreError, NoEndpoint):
            return Outcome.FAILED
        return Outcome.DELIVERED
