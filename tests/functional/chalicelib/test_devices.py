"""POST/GET/DELETE /me/devices through the Chalice app on moto: the user's own token (not the
admin role) registers push device tokens in the table, with a TTL (docs/PUSH.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib.devices import MAX_DEVICES_PER_USER, device_id
from chalicelib.registry import Registry
from tests.conftest import Clock, make_switchboard
from tests.helpers import FakeGateway, token

APNS = "a" * 64
FCM = "fcm-token:APA91b" + "x" * 140


@pytest.fixture
def client(registry: Registry, gateway: FakeGateway) -> Iterator[Client]:
    app_module.reset_switchboard(make_switchboard(registry, gateway, auth_mode="jwt"))
    try:
        with Client(app_module.app) as client:
            yield client
    finally:
        app_module.reset_switchboard(None)


def call(
    client: Client, method: str, path: str, bearer: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    data = b"" if body is None else json.dumps(body).encode()
    response = client.http.request(method, path, headers=headers, body=data)
    return response.status_code, json.loads(response.body) if response.body else None


def test_a_user_token_without_any_role_registers_lists_and_removes_its_device(
    client: Client, clock: Clock
) -> None:
    alice = token("alice")
    status, device = call(client, "POST", "/me/devices", alice, {"platform": "apns", "token": APNS})
    assert status == 200
    assert device == {
        "deviceId": device_id("apns", APNS),
        "platform": "apns",
        "registeredAt": int(clock.now),
        "expiresAt": int(clock.now) + 30 * 86400,
    }
    assert call(client, "GET", "/me/devices", alice) == (200, {"devices": [device]})
    assert call(client, "GET", "/me/devices", token("bob")) == (200, {"devices": []})
    assert call(client, "DELETE", f"/me/devices/{device['deviceId']}", alice) == (204, None)
    assert call(client, "GET", "/me/devices", alice) == (200, {"devices": []})


def test_registering_the_same_token_again_refreshes_its_expiry(
    client: Client, clock: Clock
) -> None:
    alice = token("alice")
    call(client, "POST", "/me/devices", alice, {"platform": "fcm", "token": FCM})
    clock.now += 86400
    status, again = call(client, "POST", "/me/devices", alice, {"platform": "fcm", "token": FCM})
    assert status == 200 and again["expiresAt"] == int(clock.now) + 30 * 86400
    assert len(call(client, "GET", "/me/devices", alice)[1]["devices"]) == 1


def test_an_expired_device_is_not_listed(client: Client, clock: Clock) -> None:
    alice = token("alice")
    call(client, "POST", "/me/devices", alice, {"platform": "fcm", "token": FCM})
    clock.now += 30 * 86400
    assert call(client, "GET", "/me/devices", alice) == (200, {"devices": []})


def test_the_routes_need_the_users_own_token(client: Client) -> None:
    body = {"platform": "apns", "token": APNS}
    assert call(client, "POST", "/me/devices", None, body) == (
        401, {"error": "missing bearer token"},
    )  # fmt: skip
    assert call(client, "POST", "/me/devices", "not-a-jwt", body)[0] == 401
    assert call(client, "POST", "/me/devices", token("alice", exp_in=-10), body)[0] == 401
    # A user token is refused where the admin role is needed: these routes are the exception.
    assert call(client, "GET", "/connections", token("alice"))[0] == 403
    # With jwt the token names the user; ?userId= cannot.
    assert call(client, "GET", "/me/devices?userId=bob", token("alice"))[0] == 400


@pytest.mark.parametrize(
    "body",
    [
        {"platform": "apns"},
        {"platform": "wns", "token": APNS},
        {"platform": "apns", "token": ""},
        {"platform": "apns", "token": "has space"},
        {"platform": "apns", "token": "x" * 4097},
        {"platform": "apns", "token": APNS, "extra": 1},
        ["apns", APNS],
    ],
)
def test_a_bad_registration_is_a_400(client: Client, body: Any) -> None:
    status, answer = call(client, "POST", "/me/devices", token("alice"), body)
    assert status == 400 and answer["error"]


def test_a_bad_device_id_is_a_400_and_an_unknown_one_is_already_gone(client: Client) -> None:
    assert call(client, "DELETE", "/me/devices/NOTHEX", token("alice"))[0] == 400
    assert call(client, "DELETE", "/me/devices/" + "0" * 32, token("alice")) == (204, None)


def test_one_user_holds_at_most_the_device_cap(client: Client) -> None:
    alice = token("alice")
    for n in range(MAX_DEVICES_PER_USER):
        assert (
            call(client, "POST", "/me/devices", alice, {"platform": "fcm", "token": f"t{n}"})[0]
            == 200
        )
    status, answer = call(
        client, "POST", "/me/devices", alice, {"platform": "fcm", "token": "one-more"}
    )
    assert status == 403 and "delete one" in answer["error"]
    # A token already registered is refreshed, not refused.
    assert call(client, "POST", "/me/devices", alice, {"platform": "fcm", "token": "t0"})[0] == 200


def test_without_auth_the_user_names_themselves_with_a_query_parameter(
    registry: Registry, gateway: FakeGateway
) -> None:
    app_module.reset_switchboard(make_switchboard(registry, gateway, auth_mode="none"))
    try:
        with Client(app_module.app) as client:
            body = {"platform": "apns", "token": APNS}
            assert call(client, "POST", "/me/devices?userId=u_1", None, body)[0] == 200
            assert call(client, "POST", "/me/devices", None, body)[0] == 400
            assert len(call(client, "GET", "/me/devices?userId=u_1", None)[1]["devices"]) == 1
    finally:
        app_module.reset_switchboard(None)


@pytest.mark.parametrize(
    ("method", "path", "named"),
    [
        ("GET", "/me/devices?=false", ""),  # the request schemathesis found answered 200
        ("GET", "/me/devices?limit=5", "limit"),
        ("DELETE", "/me/devices/abc?force=true", "force"),
        ("GET", "/connections?room=lobby", "room"),
        ("GET", "/rooms/lobby/members?curser=x", "curser"),
        ("GET", "/rooms/lobby/messages?afterr=3", "afterr"),
    ],
)
def test_a_query_parameter_the_route_does_not_read_is_a_400(
    client: Client, method: str, path: str, named: str
) -> None:
    """The OpenAPI document lists each route's query parameters (no others); a misspelled one
    must not answer as if it were absent."""
    bearer = token("alice") if path.startswith("/me/") else token("ops", role="admin")
    status, body = call(client, method, path, bearer)
    assert status == 400
    assert body["error"].startswith(f"unknown query parameter {named!r}")


def test_the_query_parameters_a_route_reads_are_accepted(client: Client) -> None:
    admin = token("ops", role="admin")
    assert call(client, "GET", "/rooms/lobby/members", admin)[0] == 200
    assert call(client, "GET", "/rooms/lobby/messages?after=0&limit=5", admin)[0] == 200
