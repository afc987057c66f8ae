"""Two people chat through the demo page in headless Chromium, behind the local gateway.

Each test starts the real app behind a LocalGateway on ephemeral ports (the page comes from the
REST server, its WebSocket goes to the gateway) and drives separate browser sessions the way a
person would: type, click, read the page. Screenshots land in test-output/browser/.
"""

from __future__ import annotations

import functools
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from chalicelib import web
from local_gateway import LocalGateway
from tests.browser.conftest import REPO_ROOT, BrowserFactory, SwitchboardGateway, screenshot
from tests.gateways import http
from tests.helpers import JWT_ENV, token

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

WAIT = 10.0


class ChatPage:
    """The demo page in one browser session, in the words a person would use."""

    def __init__(self, driver: WebDriver) -> None:
        self.driver = driver

    @classmethod
    def open(cls, driver: WebDriver, url: str) -> ChatPage:
        driver.get(url)
        page = cls(driver)
        page.until(lambda _: page.status()[0] == "offline", "the page to load")
        return page

    # --- reading ---------------------------------------------------------------------------

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def until(self, check: Callable[[Any], Any], what: str, timeout: float = WAIT) -> Any:
        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(
            check, message=f"timed out after {timeout}s waiting for {what}"
        )

    def status(self) -> tuple[str, str]:
        element = self.find("#status")
        return str(element.get_attribute("data-state")), self.find("#status-text").text

    def connection_id(self) -> str | None:
        return self.find("#identity").get_attribute("data-connection-id")

    def system_lines(self) -> list[str]:
        return [li.text for li in self.all("#messages li.sys")]

    def wait_online(self, timeout: float = WAIT) -> str:
        """Wait until connected and identified; return the connection id."""
        self.until(
            lambda _: self.status()[0] == "online" and self.connection_id(),
            "the page to connect",
            timeout,
        )
        return str(self.connection_id())

    def wait_message(self, text: str) -> WebElement:
        """The incoming message whose text is ``text``."""

        def found(_: Any) -> WebElement | None:
            for li in self.all("#messages li.msg.in"):
                if li.find_element(By.CSS_SELECTOR, ".body").text == text:
                    return li
            return None

        return self.until(found, f"a message {text!r}")  # type: ignore[no-any-return]

    def wait_error(self, code: str) -> WebElement:
        return self.until(  # type: ignore[no-any-return]
            lambda _: next(iter(self.all(f'#messages li.sys.error[data-code="{code}"]')), None),
            f"an error line {code!r}",
        )

    def sent_state(self, text: str) -> str:
        def state(_: Any) -> str | None:
            for li in self.all("#messages li.msg.out"):
                if li.find_element(By.CSS_SELECTOR, ".body").text == text:
                    value = li.find_element(By.CSS_SELECTOR, ".state").text
                    return value if value != "sending…" else None
            return None

        return self.until(state, f"the outcome of sending {text!r}")  # type: ignore[no-any-return]

    # --- doing -----------------------------------------------------------------------------

    def type_into(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def connect(self, user: str | None = None, jwt: str | None = None) -> str:
        if user is not None:
            self.type_into("#user-id", user)
        if jwt is not None:
            self.type_into("#token", jwt)
        self.find("#connect").click()
        return self.wait_online()

    def join(self, room: str) -> None:
        self.type_into("#room", room)
        self.find("#room").send_keys(Keys.ENTER)
        self.wait_joined(room)

    def wait_joined(self, room: str) -> None:
        self.until(
            lambda _: self.all(f'#rooms li[data-room="{room}"][data-state="joined"]'),
            f"room {room!r} to be joined",
        )

    def send(self, scope: str, text: str, target: str | None = None) -> None:
        Select(self.find("#scope")).select_by_value(scope)
        if scope == "room":
            assert target is not None
            Select(self.find("#target-room")).select_by_value(target)
        elif scope == "user":
            assert target is not None
            self.type_into("#target-user", target)
        self.type_into("#text", text)
        self.find("#text").send_keys(Keys.ENTER)

    def set_text(self, text: str) -> None:
        """Put a long text in the composer at once (send_keys would type it key by key)."""
        self.driver.execute_script(
            "const t = document.getElementById('text'); t.value = arguments[0];"
            "t.dispatchEvent(new Event('input'));",
            text,
        )


@pytest.fixture
def static_site() -> Iterator[Callable[[Path], str]]:
    """``static_site(folder)`` -> the origin of an HTTP server of ``folder``'s files (stopped
    at teardown)."""
    servers: list[ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass


def page_url(gateway: LocalGateway, query: str = "") -> str:
    assert gateway.urls is not None and gateway.urls.rest is not None
    return gateway.urls.rest + "/" + (f"?{query}" if query else "")


def console_errors(driver: WebDriver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_two_people_chat_in_a_room_directly_and_to_everyone(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway
) -> None:
    gateway = switchboard_gateway()
    alice = ChatPage.open(browser("alice"), page_url(gateway))
    bob = ChatPage.open(browser("bob"), page_url(gateway))
    # The page got the gateway's WebSocket URL from the server, and shows the local-mode banner.
    assert alice.find("#ws-url").get_attribute("value") == gateway.urls.websocket  # type: ignore[union-attr]
    assert alice.find("#auth-off").is_displayed()
    assert not alice.find("#token-field").is_displayed()
    # The page's connection is the JS client's (clients/js, served at client/index.js).
    assert alice.driver.execute_script("return document.documentElement.dataset.client") == (
        "switchboard-js"
    )

    alice.connect("u_alice")
    bob.connect("u_bob")
    assert alice.status() == ("online", "Connected as u_alice")
    alice.join("lobby")
    bob.join("lobby")

    alice.send("room", "Morning, lobby! Café's open on the 3rd floor.", target="lobby")
    message = bob.wait_message("Morning, lobby! Café's open on the 3rd floor.")
    assert message.get_attribute("data-from") == "u_alice"
    assert message.get_attribute("data-scope") == "room"
    assert message.find_element(By.CSS_SELECTOR, ".tag").text == "#lobby"
    assert message.find_element(By.CSS_SELECTOR, "time").text  # the time it was sent
    assert alice.sent_state("Morning, lobby! Café's open on the 3rd floor.") == "delivered to 1"

    bob.send("user", "Hey Alice, got a minute for the release notes?", target="u_alice")
    direct = alice.wait_message("Hey Alice, got a minute for the release notes?")
    assert direct.get_attribute("data-from") == "u_bob"
    assert direct.find_element(By.CSS_SELECTOR, ".tag").text == "direct"
    alice.send("user", "Sure, give me five.", target="u_bob")
    bob.wait_message("Sure, give me five.")

    alice.send("all", "Heads-up: deploy to prod at 14:00.")
    everyone = bob.wait_message("Heads-up: deploy to prod at 14:00.")
    assert everyone.find_element(By.CSS_SELECTOR, ".tag").text == "everyone"
    bob.send("room", "Thanks, see you there.", target="lobby")
    alice.wait_message("Thanks, see you there.")
    alice.find("#text").send_keys("Shipping the demo page now")

    screenshot(alice.driver, "chat-alice")
    screenshot(bob.driver, "chat-bob")
    for page in (alice, bob):
        assert console_errors(page.driver) == []  # no CSP violation, no script error


def test_page_reconnects_with_backoff_after_the_gateway_drops_it_and_rejoins_its_rooms(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway
) -> None:
    gateway = switchboard_gateway()
    alice = ChatPage.open(browser("alice"), page_url(gateway))
    bob = ChatPage.open(browser("bob"), page_url(gateway))
    first = alice.connect("u_alice")
    bob.connect("u_bob")
    alice.join("lobby")
    bob.join("lobby")

    # What a deployed backend does to kick a client: DELETE @connections/{id} (204).
    gateway.management_client().delete_connection(ConnectionId=first)
    alice.until(lambda _: alice.status()[0] == "reconnecting", "the page to notice the drop")
    assert "Reconnecting in" in alice.status()[1]
    second = alice.wait_online()
    assert second != first
    assert any(line.startswith("Connection lost") for line in alice.system_lines())
    assert "Reconnected." in alice.system_lines()
    alice.wait_joined("lobby")  # the new connection joined the room again

    bob.send("room", "Welcome back, Alice", target="lobby")
    alice.wait_message("Welcome back, Alice")
    alice.send("room", "Thanks, I am back", target="lobby")
    bob.wait_message("Thanks, I am back")
    screenshot(alice.driver, "reconnect-alice")

    # Leaving a room and disconnecting on purpose: no more messages, and no reconnect.
    bob.find('#rooms li[data-room="lobby"] button').click()
    bob.until(lambda _: "Left #lobby." in bob.system_lines(), "bob to leave the room")
    alice.send("room", "Anyone still here?", target="lobby")
    assert alice.sent_state("Anyone still here?") == "delivered to 0"
    bob.find("#disconnect").click()
    bob.until(lambda _: bob.status() == ("offline", "Disconnected"), "bob to disconnect")
    time.sleep(1.5)  # longer than the first backoff delay
    assert bob.status()[0] == "offline"
    assert console_errors(alice.driver) == []


def test_keepalive_pings_hold_an_idle_connection_open_past_the_idle_timeout(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway
) -> None:
    # The gateway closes a connection idle for 2.5 s (10 min on AWS); ?ping=1 pings every second.
    gateway = switchboard_gateway(idle_timeout=2.5)
    pinging = ChatPage.open(browser("pinging"), page_url(gateway, "ping=1"))
    silent = ChatPage.open(browser("silent"), page_url(gateway))  # pings every 5 minutes
    kept = pinging.connect("u_pinging")
    dropped = silent.connect("u_silent")

    # The silent page is closed by the idle timeout and comes back on a new connection.
    silent.until(lambda _: silent.connection_id() not in (None, dropped), "a reconnect", 15)
    assert any("code 1001" in line for line in silent.system_lines())

    assert pinging.connection_id() == kept
    assert pinging.status()[0] == "online"
    assert "keepalive ok" in pinging.find("#hint-keepalive").text
    assert not any(line.startswith("Connection lost") for line in pinging.system_lines())


def test_error_frames_and_the_size_check_are_shown_to_the_person(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway
) -> None:
    gateway = switchboard_gateway(env={"MAX_TEXT_CHARS": "20000", "MAX_ROOMS_PER_CONNECTION": "1"})
    page = ChatPage.open(browser("alice"), page_url(gateway))
    page.connect("u_alice")

    # Nobody is connected as u_nobody: not an error, the message is kept for their return.
    page.send("user", "anyone <b>there</b>?", target="u_nobody")
    assert page.sent_state("anyone <b>there</b>?") == "stored for their return"
    # An error frame from the server: a second room is over this connection's limit of one.
    page.join("one")
    page.type_into("#room", "two")
    page.find("#room").send_keys(Keys.ENTER)
    assert "at most 1" in page.wait_error("forbidden").text

    # The size check runs before sending: characters against MAX_TEXT_CHARS ...
    page.set_text("x" * 20001)
    assert page.find("#size").text == "Too long: 20001 characters (limit 20000)."
    assert not page.find("#send").is_enabled()
    # ... and bytes on the wire against API Gateway's 32 KB frame (é is 2 bytes in UTF-8).
    page.set_text("é" * 17000)
    assert page.find("#size").text.startswith("Too large: ")
    assert "(limit 32768)" in page.find("#size").text
    assert not page.find("#send").is_enabled()
    page.set_text("é" * 1000)
    assert page.find("#size").text == "1000 / 20000 characters"
    assert page.find("#send").is_enabled()
    screenshot(page.driver, "errors")


def test_with_auth_on_the_page_asks_for_a_token_and_reports_a_refused_one(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway
) -> None:
    gateway = switchboard_gateway(auth_mode="jwt", env=JWT_ENV)
    page = ChatPage.open(browser("carol"), page_url(gateway))
    assert page.find("#token-field").is_displayed()
    assert not page.find("#user-field").is_displayed()
    assert not page.all("#auth-off")

    page.type_into("#token", "not-a-token")
    page.find("#connect").click()
    page.until(lambda _: page.status()[0] == "error", "the refused handshake")
    assert "check the token" in page.wait_error("connect").text.lower()
    time.sleep(1.5)  # a refused first attempt is reported, not retried in a loop
    assert page.status()[0] == "error"

    page.connect(jwt=token("u_carol"))
    assert page.status()[1] == "Connected as u_carol"
    page.send("all", "hello all")  # broadcastAll needs the admin role
    assert "admin" in page.wait_error("forbidden").text


def test_without_a_configured_url_the_page_says_so_and_ws_overrides_it(
    browser: BrowserFactory,
    switchboard_gateway: SwitchboardGateway,
    tmp_path: Path,
    static_site: Callable[[Path], str],
) -> None:
    # The page as a stage with no WEBSOCKET_URL renders it, saved and served from elsewhere
    # with the client's modules beside it (Chromium imports no module from a file:// page).
    path = tmp_path / "index.html"
    path.write_text(web.index_page({"AUTH_MODE": "none"})["body"], encoding="utf-8")
    shutil.copytree(REPO_ROOT / "clients" / "js" / "src", tmp_path / "client")
    site = static_site(tmp_path)
    driver = browser("alice")
    page = ChatPage.open(driver, f"{site}/index.html")
    assert "No WebSocket URL is configured" in page.find("#no-url").text
    page.find("#connect").click()
    assert "No WebSocket URL" in page.wait_error("config").text

    # A page served from another origin: the gateway refuses its Origin unless allowed.
    gateway = switchboard_gateway(allowed_origins=[site])
    url = gateway.urls.websocket.replace("127.0.0.1", "localhost")  # type: ignore[union-attr]
    page = ChatPage.open(driver, f"{site}/index.html?ws={url}&userId=u_alice")
    assert page.find("#ws-url").get_attribute("value") == url
    assert url in page.find("#ws-override").text
    assert page.connect() and page.status()[1] == "Connected as u_alice"


def test_a_new_member_sees_the_room_s_recent_messages_on_join(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway
) -> None:
    gateway = switchboard_gateway()
    # Said before the newcomer arrived: by a back end (text and a structured event).
    for body in (
        {"text": "Standup moved to 10:30."},
        {"event": "order.updated", "data": {"id": 42, "status": "shipped"}},
    ):
        status, answer = http(gateway, "POST", "/rooms/lobby/messages", body)
        assert status == 200, answer
    carol = ChatPage.open(browser("carol"), page_url(gateway))
    carol.connect("u_carol")
    carol.join("lobby")
    first = carol.wait_message("Standup moved to 10:30.")
    second = carol.wait_message('[order.updated] {"id":42,"status":"shipped"}')
    assert first.get_attribute("data-recent") == second.get_attribute("data-recent") == "true"
    assert [
        li.find_element(By.CSS_SELECTOR, ".body").text for li in carol.all("#messages li.msg.in")
    ] == [
        "Standup moved to 10:30.",
        '[order.updated] {"id":42,"status":"shipped"}',
    ]
    assert console_errors(carol.driver) == []
