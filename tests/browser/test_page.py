"""GET / serves the demo chat page: configuration injected and escaped, a strict CSP, no network."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib import web


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(app_module.app, stage_name="dev") as client:
        yield client


def meta(body: str, name: str) -> str | None:
    found = re.search(rf'<meta name="switchboard:{name}" content="([^"]*)">', body)
    return found.group(1) if found else None


def csp_directives(header: str) -> dict[str, list[str]]:
    parts = [p.strip().split() for p in header.split(";") if p.strip()]
    return {p[0]: p[1:] for p in parts}


def sha256(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def test_get_root_serves_the_page_with_the_configured_websocket_url(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSOCKET_URL", "wss://abc123.execute-api.eu-west-1.amazonaws.com/api")
    response = client.http.get("/")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    body = response.body.decode("utf-8")
    assert body.startswith("<!doctype html>")
    assert meta(body, "websocket-url") == "wss://abc123.execute-api.eu-west-1.amazonaws.com/api"
    assert meta(body, "auth-mode") == "jwt"  # the dev stage's AUTH_MODE


def test_csp_allows_only_the_inline_script_and_style_and_websockets(client: Client) -> None:
    response = client.http.get("/")
    body = response.body.decode("utf-8")
    csp = csp_directives(response.headers["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    # The dev stage (auth on) configures no WebSocket URL here: the page may connect nowhere.
    assert csp["connect-src"] == ["'none'"]
    (script,) = re.findall(r"<script>(.*?)</script>", body, flags=re.DOTALL)
    (style,) = re.findall(r"<style>(.*?)</style>", body, flags=re.DOTALL)
    # The hashes are of the page as served: rendering must not touch the script or the style.
    # ... plus 'self': the JS client's modules, which the script imports from this origin.
    assert csp["script-src"] == [sha256(script), "'self'"]
    assert csp["style-src"] == [sha256(style)]
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in response.headers["Content-Security-Policy"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_page_loads_nothing_from_the_network(client: Client) -> None:
    body = client.http.get("/").body.decode("utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", body, flags=re.I)
    assert "@import" not in body
    assert "url(" not in body
    assert "fetch(" not in body and "XMLHttpRequest" not in body
    # Inline handlers would need 'unsafe-inline'; the script wires events itself.
    assert not re.search(r"\son[a-z]+\s*=", body)


def test_injected_values_are_html_escaped(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSOCKET_URL", 'wss://x.example/api"><script>alert(1)</script>')
    body = client.http.get("/").body.decode("utf-8")
    assert "<script>alert(1)" not in body
    assert meta(body, "websocket-url") == (
        "wss://x.example/api&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
    )
    assert body.count("<script>") == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WEBSOCKET_URL": "ws://127.0.0.1:8001/api"}, "ws://127.0.0.1:8001/api"),
        ({"WEBSOCKET_URL": " wss://h/api "}, "wss://h/api"),
        ({"WEBSOCKET_URL": "javascript:alert(1)"}, ""),
        ({"WEBSOCKET_URL": "https://h/api"}, ""),
        ({"APIGW_MANAGEMENT_ENDPOINT": "http://127.0.0.1:8001/api"}, "ws://127.0.0.1:8001/api"),
        (
            {"APIGW_MANAGEMENT_ENDPOINT": "https://abc.execute-api.eu-west-1.amazonaws.com/api/"},
            "wss://abc.execute-api.eu-west-1.amazonaws.com/api",
        ),
        (
            {"WEBSOCKET_URL": "wss://chat.example/api", "APIGW_MANAGEMENT_ENDPOINT": "http://x/y"},
            "wss://chat.example/api",
        ),
        ({}, ""),
    ],
)
def test_websocket_url_comes_from_config_or_the_management_endpoint(
    env: dict[str, str], expected: str
) -> None:
    assert web.websocket_url(env) == expected


def test_unset_url_renders_an_empty_meta_the_page_explains(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEBSOCKET_URL", raising=False)
    monkeypatch.delenv("APIGW_MANAGEMENT_ENDPOINT", raising=False)
    body = client.http.get("/").body.decode("utf-8")
    assert meta(body, "websocket-url") == ""


@pytest.mark.parametrize(
    ("env", "auth", "chars"),
    [
        ({}, "jwt", 8192),
        ({"AUTH_MODE": "none", "MAX_TEXT_CHARS": "100"}, "none", 100),
        ({"AUTH_MODE": " NONE "}, "none", 8192),
        ({"AUTH_MODE": "bogus", "MAX_TEXT_CHARS": "lots"}, "jwt", 8192),
        ({"MAX_TEXT_CHARS": "-5"}, "jwt", 8192),
    ],
)
def test_settings_never_fail_and_default_to_auth_on(
    env: dict[str, str], auth: str, chars: int
) -> None:
    page: dict[str, Any] = web.index_page(env)
    assert page["status_code"] == 200
    assert meta(page["body"], "auth-mode") == auth
    assert meta(page["body"], "max-text-chars") == str(chars)
    assert meta(page["body"], "max-frame-bytes") == "32768"


def test_the_page_renders_without_any_table_or_secret_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Unlike the other routes, the page needs no Switchboard: a misconfigured stage still shows it.
    for name in ("CONNECTIONS_TABLE", "JWT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    with Client(app_module.app) as client:
        assert client.http.get("/").status_code == 200


# --- where the page may connect (issue 12: a ?ws= link must not collect the token) -------------


def test_with_auth_on_connect_src_names_only_the_configured_origin(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSOCKET_URL", "wss://abc123.execute-api.eu-west-1.amazonaws.com/api")
    monkeypatch.delenv("WEBSOCKET_URL_ALLOWLIST", raising=False)
    response = client.http.get("/")
    csp = csp_directives(response.headers["Content-Security-Policy"])
    assert csp["connect-src"] == ["wss://abc123.execute-api.eu-west-1.amazonaws.com"]
    assert meta(response.body.decode("utf-8"), "websocket-allowlist") == ""


def test_with_auth_on_connect_src_adds_the_allow_listed_origins_only(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBSOCKET_URL", "wss://abc123.execute-api.eu-west-1.amazonaws.com/api")
    monkeypatch.setenv(
        "WEBSOCKET_URL_ALLOWLIST",
        " wss://Chat.Example.com:443 , ws://127.0.0.1:9001/api,https://web.example,bogus,,"
        "wss://abc123.execute-api.eu-west-1.amazonaws.com",
    )
    response = client.http.get("/")
    csp = csp_directives(response.headers["Content-Security-Policy"])
    assert csp["connect-src"] == [
        "wss://abc123.execute-api.eu-west-1.amazonaws.com",
        "wss://chat.example.com",
        "ws://127.0.0.1:9001",
    ]
    # The page's script checks ?ws= against the same list.
    assert meta(response.body.decode("utf-8"), "websocket-allowlist") == (
        "wss://chat.example.com ws://127.0.0.1:9001 wss://abc123.execute-api.eu-west-1.amazonaws.com"
    )


@pytest.mark.parametrize(
    ("env", "connect_src"),
    [
        ({"AUTH_MODE": "jwt"}, ["'none'"]),
        (
            {"AUTH_MODE": "jwt", "APIGW_MANAGEMENT_ENDPOINT": "http://127.0.0.1:8001/api"},
            ["ws://127.0.0.1:8001"],
        ),
        ({"AUTH_MODE": "jwt", "WEBSOCKET_URL": "ws://h.example:80/api"}, ["ws://h.example"]),
        ({"AUTH_MODE": "none"}, ["ws://127.0.0.1:*", "ws://localhost:*"]),
        (
            {"AUTH_MODE": "none", "WEBSOCKET_URL": "wss://chat.example/api"},
            ["ws://127.0.0.1:*", "ws://localhost:*", "wss://chat.example"],
        ),
        # A value that would smuggle a directive into the header is not a URL the page dials.
        (
            {
                "AUTH_MODE": "jwt",
                "WEBSOCKET_URL": "wss://x.example;script-src 'unsafe-inline'/api",
                "WEBSOCKET_URL_ALLOWLIST": "wss://y.example;connect-src *,ws://a b",
            },
            ["'none'"],
        ),
    ],
)
def test_connect_src_is_exactly_where_the_page_may_dial(
    env: dict[str, str], connect_src: list[str]
) -> None:
    header = web.index_page(env)["headers"]["Content-Security-Policy"]
    assert csp_directives(header)["connect-src"] == connect_src
    assert "unsafe-inline" not in header


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        (
            "wss://ABC.execute-api.eu-west-1.amazonaws.com/api",
            "wss://abc.execute-api.eu-west-1.amazonaws.com",
        ),
        ("wss://h.example:443/api", "wss://h.example"),
        ("wss://h.example:8443/api?x=1", "wss://h.example:8443"),
        ("ws://user:pass@127.0.0.1:8001/api", "ws://127.0.0.1:8001"),
        ("ws://h.example:99999/api", None),
        ("ws://[::1]:8001/api", None),
        ("https://h.example/api", None),
        ("wss:///api", None),
        ("", None),
    ],
)
def test_websocket_origin_is_written_as_a_browser_writes_it(url: str, origin: str | None) -> None:
    assert web.websocket_origin(url) == origin
