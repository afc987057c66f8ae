"""switchboard: Chalice wiring only. WebSocket handlers and HTTP routes call into chalicelib."""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import unquote

from chalice import Chalice, Response
from chalice.app import WebsocketEvent

from chalicelib import web
from chalicelib.auth import AuthError
from chalicelib.config import ConfigError, Settings
from chalicelib.service import BadRequest, HttpResult, NotFound, Switchboard

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
                _switchboard = Switchboard.from_settings(Settings.from_env())
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


# --- HTTP API ------------------------------------------------------------------------------


def _http(call: Any, admin: bool = True) -> Response:
    """Run a route body with auth and map the service's errors onto HTTP statuses."""
    try:
        switchboard = get_switchboard()
        caller = None
        if admin:
            caller = switchboard.authorize_http(app.current_request.headers.get("authorization"))
        status, body = call(switchboard, caller)
    except AuthError as exc:
        return _error(exc.status, str(exc))
    except BadRequest as exc:
        return _error(400, str(exc))
    except NotFound as exc:
        return _error(404, str(exc))
    except ConfigError as exc:
        app.log.error("configuration error: %s", exc)
        return _error(500, "server misconfigured")
    except Exception:  # noqa: BLE001 - a clear 502/500, never a stack trace to the caller
        app.log.exception("route failed")
        return _error(502, "upstream error; see the function's logs")
    if status == 204:
        return Response(body="", status_code=204)
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


# Path parameters may arrive percent-encoded (connection ids end in "="); ids and room names
# never contain "%", so decoding an already decoded one changes nothing.


def _error(status: int, message: str) -> Response:
    return Response(body={"error": message}, status_code=status)


def _json_body() -> Any:
    try:
        return app.current_request.json_body
    except Exception:  # noqa: BLE001 - chalice raises BadRequestError on bad JSON
        raise BadRequest("body must be valid JSON") from None


@app.route("/health", methods=["GET"])
def health() -> Response:
    return _http(lambda sb, _: (200, {"status": "ok"}), admin=False)


@app.route("/broadcast", methods=["POST"])
def broadcast() -> Response:
    return _http(lambda sb, who: (200, sb.push("all", None, _json_body(), who)))


@app.route("/users/{user_id}/messages", methods=["POST"])
def push_user(user_id: str) -> Response:
    return _http(lambda sb, who: (200, sb.push("user", unquote(user_id), _json_body(), who)))


@app.route("/rooms/{room}/messages", methods=["POST"])
def push_room(room: str) -> Response:
    return _http(lambda sb, who: (200, sb.push("room", unquote(room), _json_body(), who)))


@app.route("/connections", methods=["GET"])
def list_connections() -> Response:
    return _http(lambda sb, _: (200, sb.connections()))


@app.route("/connections/{connection_id}", methods=["DELETE"])
def kick(connection_id: str) -> Response:
    return _http(lambda sb, _: (204, sb.kick(unquote(connection_id))))


@app.route("/", methods=["GET"])
def index() -> Response:
    """The demo chat page (chalicelib/static/index.html with this stage's WebSocket URL)."""
    return Response(**web.index_page())
