"""Embedded DynamoDB (moto's server, in-process) and table bootstrap from a schema file.

The schema file is the JSON format of ``chalicelib/schema.json``: the keys of DynamoDB
``CreateTable`` (AttributeDefinitions, KeySchema, GlobalSecondaryIndexes, BillingMode, ...)
plus ``TimeToLiveAttribute``; keys starting with "_" are comments and ignored. The gateway
reads the file itself instead of importing the app's code so it works for any app.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from local_gateway.sigv4 import Credentials, SignatureError, SigV4Verifier

log = logging.getLogger("local_gateway.dynamodb")

# DynamoDB answers authentication failures with 400 and a JSON ``__type`` (botocore reads the
# part after '#'), e.g. "com.amazon.coral.service#InvalidSignatureException".
_DYNAMODB_AUTH_ERRORS = {"MissingAuthenticationTokenException", "IncompleteSignatureException"}


def load_table_schema(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return {k: v for k, v in data.items() if not k.startswith("_")}


def create_table_kwargs(schema: dict[str, Any], table_name: str) -> dict[str, Any]:
    kwargs = {k: v for k, v in schema.items() if k != "TimeToLiveAttribute"}
    kwargs["TableName"] = table_name
    return kwargs


def ensure_table(client: Any, table_name: str, schema: dict[str, Any]) -> bool:
    """Create the table (and enable TTL) unless it exists. Returns True if created."""
    try:
        client.describe_table(TableName=table_name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(**create_table_kwargs(schema, table_name))
    client.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    ttl = schema.get("TimeToLiveAttribute")
    if ttl:
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl},
        )
    return True


def dynamodb_client(endpoint_url: str, region: str, credentials: Credentials) -> Any:
    import boto3

    # Explicit credentials: a local endpoint must never receive the developer's real ones.
    return boto3.client(
        "dynamodb", endpoint_url=endpoint_url, region_name=region, **credentials.boto3_kwargs()
    )


def _wsgi_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    headers = [
        (key[5:].replace("_", "-").lower(), str(value))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").lower(), str(environ[key])))
    return headers


class _SignedOnly:
    """A WSGI app that passes on only requests signed with ``verifier``'s credentials.

    moto accepts any credentials, so without this any local process could rewrite the
    registry (a connection's role, say). The error body is DynamoDB's JSON error shape.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], verifier: SigV4Verifier) -> None:
        self._app = app
        self._verifier = verifier

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        headers = _wsgi_headers(environ)
        target = environ.get("RAW_URI") or environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING") and "?" not in target:
            target += "?" + environ["QUERY_STRING"]
        url = f"http://{environ.get('HTTP_HOST', '')}{target}"
        try:
            if not any(name == "authorization" for name, _ in headers):
                raise SignatureError(
                    "MissingAuthenticationTokenException", "Request is missing Authentication Token"
                )
            self._verifier.verify(environ["REQUEST_METHOD"], url, headers, body)
        except SignatureError as exc:
            payload = json.dumps(
                {"__type": f"com.amazon.coral.service#{exc.error_type}", "message": exc.message}
            ).encode()
            start_response(
                "400 Bad Request",
                [
                    ("Content-Type", "application/x-amz-json-1.0"),
                    ("Content-Length", str(len(payload))),
                ],
            )
            return [payload]
        return self._app(environ, start_response)


class _Serialized:
    """A WSGI app that handles one request at a time.

    DynamoDB is linearizable per item and a failed transaction changes nothing, but moto's
    backend is not thread-safe: ``TransactWriteItems`` deep-copies the whole table to roll
    back on a failed condition, so concurrent requests can crash the copy ("dictionary
    changed size during iteration", a 500) or be undone by another request's rollback (a
    join that lost the race to ``$disconnect`` resurrected deleted items). Handlers run
    concurrently, so every request to the embedded server is serialised here.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = FifoLock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class FifoLock:
    """A lock granted in arrival order.

    ``threading.Lock`` promises no order: with dozens of handler threads queued on the
    embedded DynamoDB, one request could wait behind many later ones for longer than the
    app's read timeout (5 s), and botocore then retried a conditional write that had already
    been applied. DynamoDB itself queues nobody, so the emulator must not starve anybody
    either: first come, first served bounds each wait by the queue ahead of it.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: collections.deque[threading.Event] = collections.deque()
        self._held = False

    def __enter__(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Event()
            self._waiters.append(turn)
        turn.wait()  # the holder hands the lock over: _held stays True

    def __exit__(self, *exc_info: object) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().set()
            else:
                self._held = False


class _Delayed:
    """A WSGI app whose every request is held ``seconds`` before it is served.

    DynamoDB answers in a few milliseconds from inside a region (single-digit ms, its
    "Performance at any scale" claim); moto in-process answers in well under one, which hides
    the cost of every sequential call. The wait comes before the serialising lock, so calls
    made side by side wait side by side, as they would on DynamoDB.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], seconds: float) -> None:
        self._app = app
        self.seconds = seconds

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        if self.seconds > 0:
            time.sleep(self.seconds)
        return self._app(environ, start_response)


class _SerializedMotoServer:
    """moto's ``ThreadedMotoServer``, with requests serialised (see ``_Serialized``) and
    optionally delayed (``_Delayed``)."""

    def __init__(
        self, ip_address: str, port: int, verifier: SigV4Verifier, latency_s: float = 0.0
    ) -> None:
        self._ip_address = ip_address
        self._port = port
        self._verifier = verifier
        self._latency_s = latency_s
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from local_gateway import moto_speedups

        moto_speedups.install()
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = _SignedOnly(
            _Delayed(_Serialized(DomainDispatcherApplication(create_backend_app)), self._latency_s),
            self._verifier,
        )
        self._server = make_server(
            self._ip_address, self._port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # stop() waits up to one poll interval
            name="embedded-dynamodb",
            daemon=True,
        )
        self._thread.start()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)


class EmbeddedDynamoDB:
    """moto's DynamoDB-compatible server on a thread of this process.

    ``port=0`` picks a free port. moto keeps its data in module-level state shared by
    every moto server (and ``mock_aws``) in the process, so ``stop()`` resets it by
    default to keep runs independent. Only requests signed with ``credentials`` (default:
    random for this instance) are served. ``latency_ms`` holds every request that long before
    it is served (``--dynamodb-latency-ms``: AWS-like round trips).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        reset_on_stop: bool = True,
        credentials: Credentials | None = None,
        latency_ms: float = 0.0,
    ) -> None:
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        self.latency_ms = latency_ms
        self.host = host
        self.port = port
        self.region = region
        self.reset_on_stop = reset_on_stop
        self.credentials = credentials or Credentials.generate()
        self._server: Any | None = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("EmbeddedDynamoDB is not started")
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> str:
        # werkzeug logs every request line to stderr unless told otherwise.
        werkzeug_log = logging.getLogger("werkzeug")
        if werkzeug_log.level == logging.NOTSET:
            werkzeug_log.setLevel(logging.WARNING)
        # The same moto server answers SQS (local_gateway/sqs.py) for the app's SQS handlers,
        # EventBridge and SNS for its back-end events and push (local_gateway/events.py).
        verifier = SigV4Verifier(
            self.credentials, ("dynamodb", "sqs", "events", "sns"), self.region
        )
        self._server = _SerializedMotoServer(
            self.host, self.port, verifier, self.latency_ms / 1000.0
        )
        self._server.start()
        log.info("embedded DynamoDB on %s", self.endpoint_url)
        return self.endpoint_url

    def client(self) -> Any:
        return dynamodb_client(self.endpoint_url, self.region, self.credentials)

    def stop(self) -> None:
        if self._server is None:
            return
        if self.reset_on_stop:
            try:
                self._signed_reset()
            except OSError:  # best effort: the server may already be gone
                log.debug("moto reset failed", exc_info=True)
        self._server.stop()
        self._server = None

    def _signed_reset(self) -> None:
        import urllib.request

        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials as BotoCredentials

        request = AWSRequest(method="POST", url=self.endpoint_url + "/moto-api/reset", data=b"")
        creds = self.credentials
        SigV4Auth(
            BotoCredentials(creds.access_key_id, creds.secret_access_key), "dynamodb", self.region
        ).add_auth(request)
        prepared = request.prepare()
        req = urllib.request.Request(prepared.url, headers=dict(prepared.headers), method="POST")
        urllib.request.urlopen(req, timeout=5).read()

    def __enter__(self) -> EmbeddedDynamoDB:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
