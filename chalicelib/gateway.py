"""The API Gateway management API (``@connections``): send, close and inspect one connection.

Every call returns a typed outcome instead of raising, so a fan-out can count results. Retries
of throttling (``LimitExceededException``, 429) and transient 5xx errors are botocore's
standard retry mode, not hand-written backoff.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.protocol import MAX_PAYLOAD_BYTES


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


def classify(error: ClientError) -> Outcome:
    code = error.response.get("Error", {}).get("Code", "")
    if code in _ERROR_OUTCOMES:
        return _ERROR_OUTCOMES[code]
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return _STATUS_OUTCOMES.get(status, Outcome.FAILED)


@dataclass(frozen=True)
class ConnectionInfo:
    connected_at: str
    last_active_at: str
    source_ip: str | None
    user_agent: str | None


class NoEndpoint(ValueError):
    """No management endpoint is configured or known for a connection."""


class ManagementGateway:
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
    ) -> None:
        self._override = override
        self._session = session
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
        return self._call("post_to_connection", endpoint, ConnectionId=connection_id, Data=data)

    def close(self, connection_id: str, endpoint: str | None = None) -> Outcome:
        return self._call("delete_connection", endpoint, ConnectionId=connection_id)

    def info(self, connection_id: str, endpoint: str | None = None) -> ConnectionInfo | Outcome:
        try:
            response = self.client(endpoint).get_connection(ConnectionId=connection_id)
        except ClientError as exc:
            return classify(exc)
        except (BotoCoreError, NoEndpoint):
            return Outcome.FAILED
        identity = response.get("Identity", {})
        return ConnectionInfo(
            connected_at=str(response.get("ConnectedAt", "")),
            last_active_at=str(response.get("LastActiveAt", "")),
            source_ip=identity.get("SourceIp"),
            user_agent=identity.get("UserAgent"),
        )

    def _call(self, method: str, endpoint: str | None, **kwargs: Any) -> Outcome:
        try:
            getattr(self.client(endpoint), method)(**kwargs)
        except ClientError as exc:
            return classify(exc)
        except (BotoCoreError, NoEndpoint):
            return Outcome.FAILED
        return Outcome.DELIVERED
