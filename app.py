"""switchboard: Chalice wiring only. WebSocket handlers and HTTP routes call into chalicelib."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chalice import Chalice, Response
from chalice.app import SQSEvent, WebsocketEvent

from chalicelib import errors, http_routes, web
from chalicelib.auth import Identity
from chalicelib.authorizer import support_room_answer
from chalicelib.config import ConfigError, continuation_queue_name
from chalicelib.protocol import Scope
from chalicelib.push import PushNotifier
from chalicelib.service import PAGE_PARAMS, HttpResult, Switchboard, page_params
from chalicelib.wiring import (
    build_push_notifier,
    build_switchboard,
    health_check,
    settings_from_env,
)

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
                _switchboard = build_switchboard(settings_from_env())
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
# are reported and come back after the visibility timeout (Switchboard.continue_fan_out
# raises errors.ContinuationBatchFailed on the other path).
@app.on_sqs_message(queue=continuation_queue_name(), batch_size=1, name="continue_fan_out")
def continue_fan_out(event: SQSEvent) -> dict[str, Any]:
    records = [(r.to_dict()["messageId"], r.body) for r in event]
    return get_switchboard().continue_fan_out(records)


# The push notifier (chalicelib/push.py, docs/PUSH.md): the target of the EventBridge rule for
# "Message Undelivered" events (deploy/event_rules.json); Lambda invokes it with the event.
@app.lambda_function(name="push_notifier")
def push_notifier(event: dict[str, Any], context: Any) -> dict[str, int]:
    return _push_notifier().handle(event).as_dict()


@functools.cache
def _push_notifier() -> PushNotifier:
    return build_push_notifier(settings_from_env())  # once per container


# The example authorizer of ``join: authorizer`` namespaces (chalicelib/namespaces.json names it
# for ``support:`` rooms; the contract is in chalicelib/authorizer.py and docs/PROTOCOL.md). A
# plain Lambda: the message and connect functions invoke it by the name AUTHORIZER_FUNCTIONS
# gives, and the local gateway serves Lambda's Invoke API for it.
@app.lambda_function(name="authorize_support")
def authorize_support(event: Any, context: Any) -> dict[str, Any]:
    return support_room_answer(event)


# --- HTTP API ------------------------------------------------------------------------------


# Auth and the one error mapping for every HTTP route (chalicelib/http_routes.py).
http_route = http_routes.decorator(app, lambda: get_switchboard())


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


def _json_body() -> Any:
    try:
        return app.current_request.json_body
    except Exception:  # noqa: BLE001 - chalice raises BadRequestError on bad JSON
        raise errors.BadRequest("body must be valid JSON") from None


@app.route("/health", methods=["GET"])
def health() -> Response:
    """200 ``{"status":"ok"}`` or 503 ``{"status":"misconfigured",...}`` (wiring.health)."""
    answer = health_check(get_switchboard)
    return Response(body=answer.body, status_code=answer.status)


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
@http_route(admin=True, query=PAGE_PARAMS)
def room_history(switchboard: Switchboard, caller: Identity, room: str) -> Any:
    return switchboard.history(Scope.ROOM, room, page_params(app.current_request.query_params))


@app.route("/rooms/{room}/members", methods=["GET"])
@http_route(admin=True, query=("cursor",))
def room_members(switchboard: Switchboard, caller: Identity, room: str) -> Any:
    return switchboard.members(room, (app.current_request.query_params or {}).get("cursor"))


@app.route("/rooms/{room}/members/{user_id}", methods=["DELETE"])
@http_route(admin=True)
def revoke_member(switchboard: Switchboard, caller: Identity, room: str, user_id: str) -> Any:
    return switchboard.revoke(room, user_id)


@app.route("/users/{user_id}/messages", methods=["GET"])
@http_route(admin=True, query=PAGE_PARAMS)
def user_history(switchboard: Switchboard, caller: Identity, user_id: str) -> Any:
    return switchboard.history(Scope.USER, user_id, page_params(app.current_request.query_params))


@app.route("/connections", methods=["GET"])
@http_route(admin=True)
def list_connections(switchboard: Switchboard, caller: Identity) -> Any:
    return switchboard.connections()


@app.route("/connections/{connection_id}", methods=["DELETE"])
@http_route(admin=True, status=204)
def kick(switchboard: Switchboard, caller: Identity, connection_id: str) -> Any:
    switchboard.kick(connection_id)


# --- the user's own routes: their JWT as a Bearer token, no admin role -------------------------


@app.route("/me/devices", methods=["POST"])
@http_route(user=True)
def register_device(switchboard: Switchboard, caller: Identity) -> Any:
    """Register (or refresh) a push device token for the caller (docs/PUSH.md)."""
    return switchboard.register_device(caller, _json_body())


@app.route("/me/devices", methods=["GET"])
@http_route(user=True)
def list_devices(switchboard: Switchboard, caller: Identity) -> Any:
    return switchboard.list_devices(caller)


@app.route("/me/devices/{device_id}", methods=["DELETE"])
@http_route(user=True, status=204)
def remove_device(switchboard: Switchboard, caller: Identity, device_id: str) -> Any:
    switchboard.remove_device(caller, device_id)


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
