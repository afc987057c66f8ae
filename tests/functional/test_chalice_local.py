"""What `chalice local` (Chalice's local server, driven here by chalice.test.Client) answers
when the environment `make run` writes is not loaded: a clear configuration error that says
what is missing and what to do, never an opaque 502; /health says what is missing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from tests.helpers import SECRET, token

STAGE_TABLE = "switchboard-dev-connections"  # the dev stage's, from .chalice/config.json


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Client]:
    """The dev stage as `chalice local` runs it from a shell without region or endpoints."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "JWT_SECRET", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    # No ~/.aws files and no instance metadata: nothing on this machine may fill the gaps.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.fspath(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.fspath(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    app_module.reset_switchboard(None)
    try:
        with Client(app_module.app, stage_name="dev") as test_client:
            yield test_client
    finally:
        app_module.reset_switchboard(None)


def push(client: Client, auth: str | None = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = auth
    return client.http.post("/rooms/lobby/messages", headers=headers, body='{"text": "hi"}')


def test_health_without_a_region_says_so_without_the_table_name(client: Client) -> None:
    response = client.http.get("/health")
    assert response.status_code == 503
    body = response.json_body
    assert body["status"] == "misconfigured" and body["missing"] == ["AWS_REGION"]
    assert ".chalice/local.env" in body["error"] and "make run" in body["error"]
    assert STAGE_TABLE not in response.body.decode()


def test_a_route_without_a_region_answers_a_clear_500_not_502(client: Client) -> None:
    response = push(client)
    assert response.status_code == 500
    assert response.json_body["missing"] == ["AWS_REGION"]
    assert "make run" in response.json_body["error"]


def test_a_bad_setting_is_named_without_its_value(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("JWT_SECRET", "too-short-secret")
    health = client.http.get("/health")
    assert health.status_code == 503 and health.json_body["missing"] == ["JWT_SECRET"]
    route = push(client)
    assert route.status_code == 500 and route.json_body["missing"] == ["JWT_SECRET"]
    for response in (health, route):
        assert "too-short-secret" not in response.body.decode()


def test_health_without_credentials_says_so(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("JWT_SECRET", SECRET)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    response = client.http.get("/health")
    assert response.status_code == 503
    assert response.json_body["missing"] == ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]


@pytest.mark.socket  # connects to 127.0.0.1:9, where nothing listens
def test_an_unreachable_dynamodb_is_a_configuration_answer(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment of a `make run` that has stopped: nothing listens at its DynamoDB.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    monkeypatch.setenv("MANAGEMENT_MAX_ATTEMPTS", "1")
    # The dev stage's own iss/aud (.chalice/config.json): the token passes, DynamoDB does not.
    stage = {"iss": "https://auth.example.com/", "aud": "switchboard-dev"}
    response = push(client, f"Bearer {token('ops', role='admin', **stage)}")
    assert response.status_code == 500
    assert "could not be reached" in response.json_body["error"]
    assert "make run" in response.json_body["error"]


def test_with_the_environment_loaded_health_is_ok(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("JWT_SECRET", SECRET)
    response = client.http.get("/health")
    assert response.status_code == 200 and response.json_body == {"status": "ok"}
