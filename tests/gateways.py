"""Shared by the suites that run a real LocalGateway (e2e, reliability, browser): starting and
stopping gateways, HTTP calls to their REST server, reading their table, polling.

Everything talks to 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3

from local_gateway import LocalGateway, Quotas
from local_gateway.sigv4 import Credentials

T = TypeVar("T")

GatewayFactory = Callable[..., LocalGateway]


@contextlib.contextmanager
def started_gateways() -> Iterator[GatewayFactory]:
    """Yield ``start(project_dir, before_start=None, **LocalGateway options)``; every gateway it
    started is stopped (newest first) on exit. Test defaults: ephemeral WebSocket and REST ports,
    short close timeout, a CONTINUATION_KEY (as make run gives). ``before_start(gateway)`` runs between creating and starting a gateway
    (to swap its invocation log, or the app's log handlers, before the app is imported)."""
    started: list[LocalGateway] = []

    def start(
        project_dir: str | Path,
        before_start: Callable[[LocalGateway], None] | None = None,
        **options: Any,
    ) -> LocalGateway:
        options.setdefault("ws_port", 0)
        options.setdefault("rest_port", 0)
        options.setdefault("close_timeout", 1.0)
        # As make run does (--generate-secret CONTINUATION_KEY): the dev stage names its
        # continuation queue, and its jobs are signed with this key.
        env = dict(options.pop("env", None) or {})
        env.setdefault("CONTINUATION_KEY", "test-continuation-key-" + "k" * 32)
        options["env"] = env
        gateway = LocalGateway(str(project_dir), limits=Quotas.pop_from(options), **options)
        if before_start is not None:
            before_start(gateway)
        gateway.start()
        started.append(gateway)
        return gateway

    try:
        yield start
    finally:
        for gateway in reversed(started):
            gateway.stop()


def rest_url(gateway: LocalGateway) -> str:
    assert gateway.urls is not None and gateway.urls.rest is not None, "no REST server"
    return gateway.urls.rest


def http(
    target: LocalGateway | str,
    method: str,
    path: str,
    body: Any = None,
    auth: str | None = None,
) -> tuple[int, Any]:
    """``(status, decoded JSON body or None)`` of one call to the gateway's REST server (or to
    the base URL ``target``). ``auth`` is sent as the Authorization header, even when empty."""
    base = rest_url(target) if isinstance(target, LocalGateway) else target
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if auth is not None:
        request.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def dynamodb_client(endpoint_url: str, region: str, credentials: Credentials) -> Any:
    """A client for a local DynamoDB (embedded, or a test's fault proxy in front of one); the
    embedded one serves only requests signed with its gateway's ``credentials``."""
    return boto3.client(
        "dynamodb", endpoint_url=endpoint_url, region_name=region, **credentials.boto3_kwargs()
    )


def signed_headers(
    gateway: LocalGateway, method: str, path: str, body: bytes = b""
) -> dict[str, str]:
    """Headers (Host included) signing a hand-written request to the gateway's @connections
    API with its credentials, as botocore signs (SigV4, service ``execute-api``)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    host = f"127.0.0.1:{gateway.ws_port_bound}"
    request = AWSRequest(method=method, url=f"http://{host}{path}", data=body)
    creds = gateway.credentials
    SigV4Auth(
        BotoCredentials(creds.access_key_id, creds.secret_access_key), "execute-api", gateway.region
    ).add_auth(request)
    return {"Host": host, **dict(request.headers.items())}


def scan_items(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item of ``table``, all pages, consistent. A test may Scan; the app never does."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    for _ in range(10_000):
        page = client.scan(**kwargs)
        items.extend(page.get("Items", []))
        if not page.get("LastEvaluatedKey"):
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return items


def table_items(gateway: LocalGateway) -> list[dict[str, Any]]:
    """Every item of the gateway's own table, read from its embedded DynamoDB."""
    assert gateway.urls is not None and gateway.table_name is not None
    return scan_items(gateway.dynamodb_client(), gateway.table_name)


def poll(
    read: Callable[[], T],
    done: Callable[[T], object] = bool,
    timeout: float = 10.0,
    interval: float = 0.05,
) -> T:
    """Call ``read()`` until ``done`` of its value is true or ``timeout`` has passed; the last
    value (the caller asserts on it, so a failure shows what was there)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` is true; fail the test if it is not within ``timeout``."""
    assert poll(condition, timeout=timeout), "condition not met in time"
