"""chalicelib/openapi.json against the Chalice app: the same routes, the same path parameters,
and served as is at GET /openapi.json (the e2e test fuzzes the routes with it)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from tests.conftest import make_switchboard
from tests.helpers import FakeGateway

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(app_module.OPENAPI_PATH.read_text(encoding="utf-8"))
    return doc


def operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method.upper()): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def test_the_document_lists_exactly_the_apps_routes() -> None:
    routed = {
        (path, method) for path, methods in app_module.app.routes.items() for method in methods
    }
    assert set(operations(document())) == routed


def test_every_path_parameter_is_declared_and_every_declared_one_is_in_the_path() -> None:
    for (path, method), op in operations(document()).items():
        in_path = set(re.findall(r"\{(\w+)\}", path))
        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == in_path, (method, path)
        # The handler's keyword arguments are the route's variables: the same names again.
        entry = app_module.app.routes[path][method]
        assert set(entry.view_args) == in_path, (method, path)


def test_the_public_routes_are_exactly_those_without_the_admin_check() -> None:
    doc = document()
    assert doc["security"] == [{"bearer": []}]
    public = {key for key, op in operations(doc).items() if op.get("security") == []}
    assert public == {
        ("/", "GET"),
        ("/health", "GET"),
        ("/openapi.json", "GET"),
        ("/client/index.js", "GET"),
        ("/client/streams.js", "GET"),
        ("/client/store.js", "GET"),
        ("/client/errors.js", "GET"),
    }


def test_with_jwt_auth_exactly_the_documented_public_routes_answer_without_a_token(
    registry: Registry, gateway: FakeGateway
) -> None:
    app_module.reset_switchboard(make_switchboard(registry, gateway, auth_mode="jwt"))
    try:
        with Client(app_module.app) as client:
            for (path, method), op in operations(document()).items():
                concrete = re.sub(r"\{\w+\}", "x", path)
                response = client.http.request(method, concrete, body=b'{"text":"t"}')
                if op.get("security") == []:
                    assert response.status_code == 200, (method, path, response.body)
                else:
                    answered = (response.status_code, json.loads(response.body))
                    assert answered == (401, {"error": "missing bearer token"}), (method, path)
    finally:
        app_module.reset_switchboard(None)


def test_every_error_answer_is_documented_as_a_json_error_object() -> None:
    doc = document()
    for (path, method), op in operations(doc).items():
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            name = response["$ref"].rsplit("/", 1)[-1]
            schema = doc["components"]["responses"][name]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)


def test_the_document_is_served_as_is_without_a_token(monkeypatch: Any) -> None:
    monkeypatch.setenv("AUTH_MODE", "jwt")
    with Client(app_module.app) as client:
        response = client.http.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.body) == document()


@pytest.mark.parametrize(
    ("method", "path", "headers", "status", "error"),
    [
        ("POST", "/broadcast", {"Content-Type": "text/plain"}, 415,
         "Unsupported media type: text/plain"),
        ("PUT", "/broadcast", {"Content-Type": "application/json"}, 405,
         "Unsupported method: PUT"),
    ],
)  # fmt: skip
def test_chalices_own_refusals_answer_the_apis_error_shape(
    switchboard: Switchboard, method: str, path: str, headers: dict[str, str], status: int,
    error: str,
) -> None:  # fmt: skip
    """Found by fuzzing: Chalice's own 415/405 answered {"Code": ..., "Message": ...}."""
    app_module.reset_switchboard(switchboard)
    try:
        with Client(app_module.app) as client:
            response = client.http.request(method, path, headers=headers, body=b'{"text":"x"}')
    finally:
        app_module.reset_switchboard(None)
    assert (response.status_code, json.loads(response.body)) == (status, {"error": error})


def test_the_me_routes_are_exactly_those_a_user_token_may_call() -> None:
    """The user's own routes say so (userBearer); every other guarded route needs the admin."""
    user_routes = {
        key
        for key, op in operations(document()).items()
        if op.get("security") == [{"userBearer": []}]
    }
    assert user_routes == {
        ("/me/devices", "POST"),
        ("/me/devices", "GET"),
        ("/me/devices/{device_id}", "DELETE"),
    }
    assert all(path.startswith("/me/") for path, _ in user_routes)
