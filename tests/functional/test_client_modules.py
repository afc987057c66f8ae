"""GET /client/*.js serves the JS client's ES modules (clients/js/src) for the demo page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chalice.test import Client

import app as app_module
from chalicelib import web

CLIENT_SRC = Path(__file__).resolve().parents[2] / "clients" / "js" / "src"


@pytest.fixture
def client() -> Iterator[Client]:
    with Client(app_module.app, stage_name="dev") as client:
        yield client


@pytest.mark.parametrize("name", web.CLIENT_MODULES)
def test_each_module_is_served_as_javascript_byte_for_byte_from_the_client_source(
    client: Client, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_MODE", "jwt")  # public, like the page that imports it
    response = client.http.get(f"/client/{name}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    csp = response.headers["Content-Security-Policy"]
    assert csp == "default-src 'none'; frame-ancestors 'none'"
    assert "unsafe" not in csp
    assert response.body.decode("utf-8") == (CLIENT_SRC / name).read_text(encoding="utf-8")


def test_the_served_modules_are_links_to_the_one_client_source() -> None:
    for name in web.CLIENT_MODULES:
        served = web.CLIENT_DIR / name
        assert served.is_symlink(), f"{served} must link to clients/js/src, not copy it"
        assert served.resolve() == (CLIENT_SRC / name).resolve()


def test_the_modules_import_only_each_other() -> None:
    # The page's CSP allows scripts from its own origin only: a module importing anything
    # but a sibling served here would fail in the browser.
    for name in web.CLIENT_MODULES:
        text = (web.CLIENT_DIR / name).read_text(encoding="utf-8")
        for line in text.splitlines():
            if line.startswith("import ") or (line.startswith("export ") and " from " in line):
                target = line.rsplit(" from ", 1)[-1].strip().strip(";").strip("\"'")
                assert target.removeprefix("./") in web.CLIENT_MODULES, (name, line)


def test_only_the_browser_modules_are_served(client: Client) -> None:
    for path in ("/client/file-store.js", "/client/index.d.ts", "/client/../app.py"):
        assert client.http.get(path).status_code in (403, 404), path
    with pytest.raises(ValueError, match="not a client module"):
        web.client_module("file-store.js")
