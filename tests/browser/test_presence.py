"""The demo page's member list (issue #15): who is in the selected room, kept live from
``presence`` events, refreshed with ``members`` after a join and after a reconnect."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import BrowserFactory, SwitchboardGateway, screenshot
from tests.browser.test_chat import ChatPage, console_errors, page_url
from tests.browser.test_resume import request
from tests.wsclient import open_ws

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]


def members(page: ChatPage) -> list[str]:
    """The user ids listed, read in one script (the list is re-rendered on every event)."""
    script = "return [...document.querySelectorAll('#members li')].map(li => li.dataset.userId);"
    return list(page.driver.execute_script(script))


def connections(page: ChatPage, user: str) -> str:
    script = (
        "const c = document.querySelector(`#members li[data-user-id='${arguments[0]}'] .conns`);"
    )
    return str(page.driver.execute_script(script + "return c ? c.textContent : '';", user))


def wait_members(page: ChatPage, expected: list[str]) -> None:
    page.until(lambda _: members(page) == expected, f"the member list to be {expected}")


def test_two_pages_in_a_room_see_each_other_enter_and_leave(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway
) -> None:
    gateway = switchboard_gateway()
    alice, bob = (ChatPage.open(browser(name), page_url(gateway)) for name in ("alice", "bob"))
    for page, user in ((alice, "u_alice"), (bob, "u_bob")):
        page.connect(user)
    alice.join("lobby")
    wait_members(alice, ["u_alice"])  # the members answer after the join
    assert alice.find("#members-room").text == "#lobby"

    bob.join("lobby")
    wait_members(bob, ["u_alice", "u_bob"])  # bob's from members, alice's from the event
    wait_members(alice, ["u_alice", "u_bob"])
    assert "u_bob entered #lobby." in alice.system_lines()
    assert alice.find("#members-count").text == "(2)"
    screenshot(alice.driver, "presence-alice")

    bob.find('#rooms li[data-room="lobby"] button').click()  # leave
    wait_members(alice, ["u_alice"])
    assert "u_bob left #lobby." in alice.system_lines()
    bob.join("lobby")
    wait_members(alice, ["u_alice", "u_bob"])
    bob.find("#disconnect").click()  # the last connection goes: $disconnect announces the leave
    wait_members(alice, ["u_alice"])
    for page in (alice, bob):
        assert console_errors(page.driver) == []  # no CSP violation, no script error


def test_the_list_is_refreshed_after_a_reconnect_and_counts_connections(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway, ws_connect: Any
) -> None:
    gateway = switchboard_gateway()
    alice = ChatPage.open(browser("alice"), page_url(gateway))
    first = alice.connect("u_alice")
    alice.join("lobby")
    wait_members(alice, ["u_alice"])

    # Kicked (DELETE @connections/{id}); someone enters while the page is away.
    gateway.management_client().delete_connection(ConnectionId=first)
    alice.until(lambda _: alice.status()[0] == "reconnecting", "the page to notice the drop")
    carol = ws_connect(gateway, "userId=u_carol")
    assert request(carol, {"action": "join", "room": "lobby"})["joined"] is True
    alice.wait_online()
    alice.wait_joined("lobby")
    wait_members(alice, ["u_alice", "u_carol"])  # members after the rejoin (and the replay)

    with open_ws(gateway, "userId=u_carol") as second:  # a second connection: no new entry
        assert request(second, {"action": "join", "room": "lobby"})["joined"] is True
        # The page asks members again on its next join: leave and come back.
        alice.find('#rooms li[data-room="lobby"] button').click()
        alice.join("lobby")
        alice.until(lambda _: connections(alice, "u_carol"), "carol's connections to show")
        assert connections(alice, "u_carol") == "2 connections"
    carol.close()  # both gone: carol leaves
    wait_members(alice, ["u_alice"])
    assert console_errors(alice.driver) == []
