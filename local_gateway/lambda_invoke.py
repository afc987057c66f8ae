"""Lambda's Invoke API for the app's ``@app.lambda_function``s, run in this process.

moto's Lambda runs functions in Docker, which a developer's machine may not have; the app's
plain functions (an authorizer, for switchboard) are Python in the app module already, so the
gateway serves ``POST /2015-03-31/functions/{FunctionName}/invocations`` on a port of its own
and calls them in-process, as it runs the SQS handlers (``sqs.py``). The app reaches it
through ``AWS_ENDPOINT_URL_LAMBDA``, which boto3 reads for every Lambda client it builds.

What is copied from AWS (botocore's ``lambda/2015-03-31/service-2.json``, operation
``Invoke``; "Invoke", AWS Lambda API reference):

- requests are SigV4-signed for service ``lambda`` with the run's credentials (others: 403);
- ``FunctionName`` may be the function's name, its ARN (``arn:aws:lambda:<region>:<account>:
  function:<name>``, optionally ``:<qualifier>``) or a partial ARN; Chalice names a deployed
  function ``<app>-<stage>-<name>``, and the Chalice name alone is accepted too;
- ``RequestResponse`` (the default) answers 200 with the return value as the body and
  ``X-Amz-Executed-Version: $LATEST``; a function that raises or runs past its timeout answers
  200 with ``X-Amz-Function-Error: Unhandled`` and ``{"errorMessage", "errorType"}``;
  ``Event`` answers 202 at once and runs the function in the background; ``DryRun`` 204;
- an unknown function: 404 ``ResourceNotFoundException`` (the type in ``x-amzn-ErrorType``,
  which botocore turns into ``client.exceptions.ResourceNotFoundException``).

The function's timeout is its ``lambda_timeout`` in .chalice/config.json (Chalice's lookup:
the stage's function setting, the function's, the stage's, the top level; default 60 s). A
timed-out function keeps running in its thread (a Lambda sandbox would be stopped).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from local_gateway.lambda_events import LambdaContext
from local_gateway.lambda_runtime import ChaliceProject, Invocation
from local_gateway.sigv4 import Credentials, SignatureError, SigV4Verifier

log = logging.getLogger("local_gateway.lambda_invoke")
PATH_PREFIX = "/2015-03-31/functions/"
PATH_SUFFIX = "/invocations"
ROUTE_PREFIX = "lambda:"  # Invocation.route_key of a function invocation: "lambda:<name>"
# Lambda's synchronous payload limit (request and response): 6 MB ("Lambda quotas").
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024


@dataclass(frozen=True)
class LocalFunction:
    """One ``@app.lambda_function`` of the app."""

    name: str  # the Chalice name
    deployed_name: str  # <app>-<stage>-<name>, as ``chalice deploy`` names it
    handler: Callable[[Any, Any], Any]
    timeout_seconds: float
    memory_mb: int


def function_setting(project: ChaliceProject, function: str, key: str, default: Any) -> Any:
    """One function's setting as Chalice looks it up: the stage's ``lambda_functions`` entry,
    the top-level one, the stage, the top level. (Read here: the deployment zip the smoke
    test runs has Chalice's runtime package only, without ``chalice.config``.)"""
    config = project.config_from_disk
    stage = config.get("stages", {}).get(project.chalice_stage, {})
    for scope in (
        stage.get("lambda_functions", {}).get(function, {}),
        config.get("lambda_functions", {}).get(function, {}),
        stage,
        config,
    ):
        if key in scope:
            return scope[key]
    return default


def app_functions(app: Any, project: ChaliceProject) -> list[LocalFunction]:
    """The app's pure Lambda functions, with the timeout and memory config.json gives each."""
    out = []
    for registration in getattr(app, "pure_lambda_functions", []):
        module_name, _, attr = registration.handler_string.rpartition(".")
        module = sys.modules.get(module_name)
        handler = getattr(module, attr, None) if module is not None else None
        name = registration.name
        out.append(
            LocalFunction(
                name=name,
                deployed_name=f"{project.app_name}-{project.chalice_stage}-{name}",
                handler=handler or registration,
                timeout_seconds=float(function_setting(project, name, "lambda_timeout", 60)),
                memory_mb=int(function_setting(project, name, "lambda_memory_size", 128)),
            )
        )
    return out


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes = b""


def _error(status: int, error_type: str, message: str) -> Answer:
    body = json.dumps({"Type": "User", "message": message}).encode()
    return Answer(
        status,
        {"Content-Type": "application/json", "x-amzn-ErrorType": error_type},
        body,
    )


class LocalFunctions:
    """Serves Invoke for the app's functions; ``url`` is the app's ``AWS_ENDPOINT_URL_LAMBDA``."""

    def __init__(
        self,
        host: str,
        region: str,
        credentials: Credentials,
        on_invocation: Callable[[Invocation], None],
        account: str = "123456789012",
    ) -> None:
        self.host = host
        self.region = region
        self.account = account
        self.verifier = SigV4Verifier(credentials, "lambda", region)
        self.on_invocation = on_invocation
        self.functions: dict[str, LocalFunction] = {}
        self.url: str | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def bind(self) -> str:
        """Bind the port (before the app is imported: its environment names the URL)."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                url = f"http://{self.headers.get('Host', '')}{self.path}"
                answer = owner.handle("POST", url, list(self.headers.items()), body)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug(format, *args)

        self._server = ThreadingHTTPServer((self.host, 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{self.host}:{self._server.server_address[1]}"
        return self.url

    def start(self, functions: list[LocalFunction]) -> None:
        assert self._server is not None, "bind() first"
        for function in functions:
            self.functions[function.deployed_name] = function
            self.functions[function.name] = function
            log.info("Lambda function %s -> %s", function.deployed_name, function.name)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="local-gateway-lambda",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def resolve(self, function_name: str) -> LocalFunction | None:
        """A function by name, ARN or partial ARN (``<account>:function:<name>``)."""
        name = function_name
        if ":function:" in name:
            name = name.split(":function:", 1)[1].split(":", 1)[0]
        return self.functions.get(name)

    def handle(self, method: str, url: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        path = urlsplit(url).path
        if method != "POST" or not (path.startswith(PATH_PREFIX) and path.endswith(PATH_SUFFIX)):
            return _error(404, "ResourceNotFoundException", "Unknown operation")
        try:
            self.verifier.verify(method, url, headers, body)
        except SignatureError as exc:
            return _error(403, exc.error_type, exc.message)
        if len(body) > MAX_PAYLOAD_BYTES:
            return _error(413, "RequestTooLargeException", "Request must be smaller than 6 MB")
        name = unquote(path[len(PATH_PREFIX) : -len(PATH_SUFFIX)])
        function = self.resolve(name)
        if function is None:
            arn = f"arn:aws:lambda:{self.region}:{self.account}:function:{name}"
            return _error(404, "ResourceNotFoundException", f"Function not found: {arn}")
        invocation_type = next(
            (v for k, v in headers if k.lower() == "x-amz-invocation-type"), "RequestResponse"
        )
        try:
            event = json.loads(body) if body else {}
        except ValueError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body")
        if invocation_type == "DryRun":
            return Answer(204, {})
        if invocation_type == "Event":
            threading.Thread(target=self.run, args=(function, event), daemon=True).start()
            return Answer(202, {})
        return self.run(function, event)

    def run(self, function: LocalFunction, event: Any) -> Answer:
        """Call the function with a deadline; the Invoke answer Lambda would give."""
        context = LambdaContext(
            function.deployed_name,
            function.memory_mb,
            int(function.timeout_seconds * 1000),
            self.region,
        )
        record = Invocation(route_key=ROUTE_PREFIX + function.name, connection_id="", event=event)
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["result"] = json.dumps(function.handler(event, context))
            except Exception as exc:  # noqa: BLE001 - Lambda reports it as a function error
                outcome["error"] = exc
                outcome["trace"] = traceback.format_exc()

        started = time.perf_counter()
        worker = threading.Thread(target=call, name=f"lambda-{function.name}", daemon=True)
        worker.start()
        worker.join(function.timeout_seconds)
        record.duration_ms = (time.perf_counter() - started) * 1000
        record.finished_at = time.time()
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": "$LATEST"}
        if worker.is_alive():
            record.timed_out = True
            record.error = f"timed out after {function.timeout_seconds:.2f} seconds"
            payload = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": (
                    f"RequestId: {uuid.uuid4()} Error: Task timed out after "
                    f"{function.timeout_seconds:.2f} seconds"
                ),
            }
        elif "error" in outcome:
            exc = outcome["error"]
            record.error = outcome["trace"]
            log.error("Lambda function %s failed:\n%s", function.name, record.error)
            payload = {"errorMessage": str(exc), "errorType": type(exc).__name__}
        else:
            record.result = json.loads(outcome["result"])
            self.on_invocation(record)
            return Answer(200, headers, outcome["result"].encode("utf-8"))
        self.on_invocation(record)
        headers["X-Amz-Function-Error"] = "Unhandled"
        return Answer(200, headers, json.dumps(payload).encode("utf-8"))
