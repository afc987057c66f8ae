"""switchboard: Chalice wiring only. WebSocket handlers and HTTP routes call into chalicelib."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from chalice import Chalice, Response
from chalice.app import SQSEvent, WebsocketEvent

from chalicelib import web
from chalicelib.auth import AuthError, Identity
from chalicelib.aws_errors import ConfigProblem, config_problem
from chalicelib.config import ConfigError, Settings, continuation_queue_name
from chalicelib.idempotency import SendInProgress
from chalicelib.message_log import LogWriteError
from chalicelib.protocol import Scope
from chalicelib.service import BadRequest, HttpResult, NotFound, Switchboard
from chalicelib.wiring import build_switchboard

app = Chalice(app_name="switchboard")
app.experimental_feature_flags.update(["WEBSOCKETS"])

_switchboard: Switchboard | None = None
_lock = threading.Lock()


def get_switchboard() -> Switchboard:
    """The app's collaborators, built once per container on first use (env is read then)."""
    global _switchboard
    if _switchboard is None:
        with _lock:
            if _switchboard is None:
                _switchboard = build_switchboard(Settings.from_env())
    return _switchboard


def reset_switchboard(switchboard: Switchboard | None = None) -> None:
    """Replace (or drop, to rebuild from the environment) the container's switchboard."""
    global _switchboard
    _switchboard = switchboard


def _ws_response(result: HttpResult) -> Response | dict[str, Any]:
    if result.status == 200:
        return {"statusCode": 200}
    return Response(body=result.body or "", status_code=result.status)


@app.on_ws_connect()
def connect(event: WebsocketEvent) -> Response | dict[str, Any]:
    try:
        switchboard = get_switchboard()
    except ConfigError as exc:
        app.log.error("configuration error: %s", exc)
        return Response(body={"message": "server misconfigured"}, status_code=500)
    return _ws_response(switchboard.on_connect(event.to_dict()))


@app.on_ws_message()
def message(event: WebsocketEvent) -> dict[str, Any]:
    return _ws_response(get_switchboard().on_message(event.to_dict()))  # type: ignore[return-value]


@app.on_ws_disconnect()
def disconnect(event: WebsocketEvent) -> dict[str, Any]:
    return _ws_response(get_switchboard().on_disconnect(event.to_dict()))  # type: ignore[return-value]


# A fan-out that reaches its deadline continues here (chalicelib/continuation.py). The queue is
# the stage's own (CONTINUATION_QUEUE_NAME, read at import: see chalicelib/config.py).
# batch_size=1 is what ``chalice deploy`` subscribes with: its mapping cannot report partial
# batch failures, so a failed job raises and SQS delivers that one job again. The packaged
# stack replaces the mapping with one of 5 jobs and ReportBatchItemFailures
# (deploy/template.py) and sets CONTINUATION_PARTIAL_BATCH=true: there only the failed jobs
# are reported and come back after the visibility timeout.
@app.on_sqs_message(queue=continuation_queue_name(), batch_size=1, name="continue_fan_out")
def continue_fan_out(event: SQSEvent) -> dict[str, Any]:
    records = [(r.to_dict()["messageId"], r.body) for r in event]
    switchboard = get_switchboard()
    continuation = switchboard.continuation
    if continuation is None:
        app.log.error("no continuation queue is configured: %d jobs left to SQS", len(records))
        result: dict[str, Any] = {
            "batchItemFailures": [{"itemIdentifier": mid} for mid, _ in records]
        }
    else:
        result = continuation.run_batch(records)
    failed = result.get("batchItemFailures") or []
    if failed and not switchboard.settings.continuation_partial_batch:
        # Returning would delete every job of the batch ("Handling errors for an SQS event
        # source in Lambda": without ReportBatchItemFailures the response is ignored).
        raise ContinuationBatchFailed(f"{len(failed)} of {len(records)} jobs failed")
    return result


class ContinuationBatchFailed(RuntimeError):
    """Raised so that Lambda's SQS poller leaves the batch on the queue for another try."""


# --- HTTP API ------------------------------------------------------------------------------


# A route body gets the switchboard, the caller (an admin, or None on a public route) and the
# path parameters, and returns the JSON answer.
RouteBody = Callable[..., Any]


def http_route(
    admin: bool = True, status: int = 200
) -> Callable[[RouteBody], Callable[..., Response]]:
    """Run a route body with auth and map the service's errors onto HTTP statuses.

    ``admin`` routes need ``Authorization: Bearer <token>`` with the admin role. A ``status``
    of 204 answers with an empty body. Path parameters may arrive percent-encoded (connection
    ids end in "="); ids and room names never contain "%", so decoding an already decoded one
    changes nothing.
    """

    def decorate(body: RouteBody) -> Callable[..., Response]:
        @functools.wraps(body)
        def route(**params: str) -> Response:
            try:
                switchboard = get_switchboard()
                caller = None
                if admin:
                    headers = app.current_request.headers
                    caller = switchboard.authorize_http(headers.get("authorization"))
                answer = body(switchboard, caller, **{k: unquote(v) for k, v in params.items()})
            except AuthError as exc:
                return _error(exc.status, str(exc))
            except BadRequest as exc:
                return _error(400, str(exc))
            except NotFound as exc:
                return _error(404, str(exc))
            except ConfigError as exc:
                app.log.error("configuration error: %s", exc)
                return _misconfigured(_setting_problem(exc))
            except SendInProgress as exc:  # the same clientMsgId is being sent: retry shortly
                return _error(409, str(exc))
            except LogWriteError as exc:
                problem = config_problem(exc.__cause__)
                if problem is not None:
                    return _misconfigured(problem)
                app.log.exception("message log write failed")
                return _error(503, "the message could not be logged; nothing was sent")
            except Exception as exc:  # noqa: BLE001 - a clear 502, never a stack trace to the caller
                problem = config_problem(exc)
                if problem is not None:
                    return _misconfigured(problem)
                app.log.exception("route failed")
                return _error(502, "upstream error; see the function's logs")
            if status == 204:
                return Response(body="", status_code=204)
            return Response(
                body=answer, status_code=status, headers={"Content-Type": "application/json"}
            )

        return route

    return decorate


@app.middleware("http")
def framework_errors_as_ours(event: Any, get_response: Callable[[Any], Response]) -> Response:
    """Chalice answers some requests before any route runs (415 for a body that is not JSON,
    405 for a method the path lacks) with ``{"Code": ..., "Message": ...}``: give them the
    API's one error shape, ``{"error": ...}``, as the OpenAPI document says."""
    response = get_response(event)
    body = response.body
    if response.status_code >= 400 and isinstance(body, dict) and set(body) == {"Code", "Message"}:
        response.body = {"error": str(body["Message"])}
    return response


def _error(status: int, message: str) -> Response:
    return Response(body={"error": message}, status_code=status)


def _setting_problem(exc: ConfigError) -> ConfigProblem:
    # Only the variable's name: the message may quote a value or an SSM parameter's name.
    missing = (exc.setting,) if exc.setting else ()
    return ConfigProblem(missing, "server misconfigured; see the function's logs")


def _misconfigured(problem: ConfigProblem) -> Response:
    """500 saying what is missing (variable names only, never values or the table name)."""
    app.log.error("configuration problem: %s %s", problem.message, list(problem.missing))
    body = {"error": problem.message, "missing": list(problem.missing)}
    return Response(body=body, status_code=500)


def _json_body() -> Any:
    try:
        return app.current_request.json_body
    except Exception:  # noqa: BLE001 - chalice raises BadRequestError on bad JSON
        raise BadRequest("body must be valid JSON") from None


@app.route("/health", methods=["GET"])
def health() -> Response:
    """200 ``{"status":"ok"}`` (nothing about the deployment, no table name), or 503
    ``{"status":"misconfigured","missing":[variable names],"error":...}`` when the function
    cannot work: no table, region or credentials (e.g. ``chalice local`` without the
    environment ``make run`` writes), or a setting ConfigError refuses."""
    problem: ConfigProblem | None = None
    try:
        get_switchboard()
        problem = _missing_credentials()
    except ConfigError as exc:
        app.log.error("configuration error: %s", exc)
        problem = _setting_problem(exc)
    except Exception as exc:  # noqa: BLE001 - anything else is reported, never raised
        problem = config_problem(exc)
        if problem is None:
            app.log.exception("health check failed")
            problem = ConfigProblem((), "the function could not start; see its logs")
    if problem is None:
        return Response(body={"status": "ok"}, status_code=200)
    body = {"status": "misconfigured", "missing": list(problem.missing), "error": problem.message}
    return Response(body=body, status_code=503)


def _missing_credentials() -> ConfigProblem | None:
    """botocore finds credentials only when it signs: look now so /health can say so."""
    import boto3
    from botocore.exceptions import NoCredentialsError

    if boto3.session.Session().get_credentials() is None:
        return config_problem(NoCredentialsError())
    return None


@app.route("/broadcast", methods=["POST"])
@http_route(admin=True)
def broadcast(switchboard: Switchboard, caller: Identity) -> Any:
    return switchboard.push(Scope.ALL, None, _json_body(), caller)


@app.route("/users/{user_id}/messages", methods=["POST"])
@http_route(admin=True)
def push_user(switchboard: Switchboard, caller: Identity, user_id: str) -> Any:
    return switchboard.push(Scope.USER, user_id, _json_body(), caller)


@app.route("/rooms/{room}/messages", methods=["POST"])
@http_route(admin=True)
def push_room(switchboard: Switchboard, caller: Identity, room: str) -> Any:
    return switchboard.push(Scope.ROOM, room, _json_body(), caller)


@app.route("/rooms/{room}/messages", methods=["GET"])
@http_route(admin=True)
def room_history(switchboard: Switchboard, caller: Identity, room: str) -> Any:
    return switchboard.history(Scope.ROOM, room, *_page_params())


@app.route("/rooms/{room}/members", methods=["GET"])
@http_route(admin=True)
def room_members(switchboard: Switchboard, caller: Identity, room: str) -> Any:
    return switchboard.members(room)


@app.route("/users/{user_id}/messages", methods=["GET"])
@http_route(admin=True)
def user_history(switchboard: Switchboard, caller: Identity, user_id: str) -> Any:
    return switchboard.history(Scope.USER, user_id, *_page_params())


def _page_params() -> tuple[str | None, str | None]:
    """``after`` and ``limit``; any other query parameter is a 400 (a misspelled ``after``
    must not silently answer from the start of the stream)."""
    query = app.current_request.query_params or {}
    unknown = sorted(set(query) - {"after", "limit"})
    if unknown:
        raise BadRequest(f"unknown query parameter {unknown[0]!r}: expected after, limit")
    return query.get("after"), query.get("limit")


@app.route("/connections", methods=["GET"])
@http_route(admin=True)
def list_connections(switchboard: Switchboard, caller: Identity) -> Any:
    return switchboard.connections()


@app.route("/connections/{connection_id}", methods=["DELETE"])
@http_route(admin=True, status=204)
def kick(switchboard: Switchboard, caller: Identity, connection_id: str) -> Any:
    switchboard.kick(connection_id)


# The HTTP API's OpenAPI document: its one source, shipped in the zip with chalicelib; a test
# checks that its paths and methods are exactly this app's routes.
OPENAPI_PATH = Path(__file__).with_name("chalicelib") / "openapi.json"


@functools.cache
def _openapi_text() -> str:
    return OPENAPI_PATH.read_text(encoding="utf-8")  # once per container


@app.route("/openapi.json", methods=["GET"])
def openapi() -> Response:
    """This API's OpenAPI 3.1 document; public, like the page (it describes no deployment)."""
    return Response(
        body=_openapi_text(), status_code=200, headers={"Content-Type": "application/json"}
    )


@app.route("/", methods=["GET"])
def index() -> Response:
    """The demo chat page (chalicelib/static/index.html with this stage's WebSocket URL)."""
    return Response(**web.index_page())


def client_module() -> Response:
    """One of the JS client's ES modules, which the demo page imports (public, like the page)."""
    name = app.current_request.path.rsplit("/", 1)[-1]
    return Response(**web.client_module(name))


# One route per module rather than /client/{name}: nothing else is ever looked up by name.
for _module in web.CLIENT_MODULES:
    app.route(f"/client/{_module}", methods=["GET"], name="client_module")(client_module)
