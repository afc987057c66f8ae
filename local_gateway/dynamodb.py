"""Embedded DynamoDB (moto's server, in-process) and table bootstrap from a schema file.

The schema file is the JSON format of ``chalicelib/schema.json``: the keys of DynamoDB
``CreateTable`` (AttributeDefinitions, KeySchema, GlobalSecondaryIndexes, BillingMode, ...)
plus ``TimeToLiveAttribute``; keys starting with "_" are comments and ignored. The gateway
reads the file itself instead of importing the app's code so it works for any app.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger("local_gateway.dynamodb")

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


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


def dynamodb_client(endpoint_url: str, region: str) -> Any:
    import boto3

    # Explicit dummy credentials: a local endpoint must never receive real ones.
    return boto3.client(
        "dynamodb", endpoint_url=endpoint_url, region_name=region, **DUMMY_CREDENTIALS
    )


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
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        with self._lock:
            return list(self._app(environ, start_response))


class _SerializedMotoServer:
    """moto's ``ThreadedMotoServer``, with requests serialised (see ``_Serialized``)."""

    def __init__(self, ip_address: str, port: int) -> None:
        self._ip_address = ip_address
        self._port = port
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = _Serialized(DomainDispatcherApplication(create_backend_app))
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
    default to keep runs independent.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        reset_on_stop: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.region = region
        self.reset_on_stop = reset_on_stop
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
        self._server = _SerializedMotoServer(self.host, self.port)
        self._server.start()
        log.info("embedded DynamoDB on %s", self.endpoint_url)
        return self.endpoint_url

    def client(self) -> Any:
        return dynamodb_client(self.endpoint_url, self.region)

    def stop(self) -> None:
        if self._server is None:
            return
        if self.reset_on_stop:
            try:
                req = urllib.request.Request(self.endpoint_url + "/moto-api/reset", method="POST")
                urllib.request.urlopen(req, timeout=5).read()
            except OSError:  # best effort: the server may already be gone
                log.debug("moto reset failed", exc_info=True)
        self._server.stop()
        self._server = None

    def __enter__(self) -> EmbeddedDynamoDB:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
