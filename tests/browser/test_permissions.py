"""The demo page opens a private room in AUTH_MODE=jwt: with the token's capability it joins
and talks; without it the person is told which operation is missing."""

from __future__ import annotations

from tests.browser.conftest import BrowserFactory, SwitchboardGateway, screenshot
from tests.browser.test_chat import ChatPage, page_url
from tests.helpers import JWT_ENV, token

ROOM = "private:team-42"
FULL = ["join", "send", "history", "presence"]


def test_the_page_opens_a_private_room_with_a_capability_in_the_token(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway
) -> None:
    gateway = switchboard_gateway(auth_mode="jwt", env=JWT_ENV)
    carol = ChatPage.open(browser("carol"), page_url(gateway))
    carol.connect(jwt=token("u_carol", rooms={ROOM: FULL}))
    carol.join(ROOM)  # waits until the page shows it joined

    dave = ChatPage.open(browser("dave"), page_url(gateway))
    dave.connect(jwt=token("u_dave"))
    dave.type_into("#room", ROOM)
    dave.find("#join").click()
    refusal = dave.wait_error("forbidden")
    assert f"missing operation 'join' on room '{ROOM}'" in refusal.text
    dave.until(lambda _: not dave.all(f'#rooms li[data-room="{ROOM}"]'), "the refused room to go")

    erin = ChatPage.open(browser("erin"), page_url(gateway))
    erin.connect(jwt=token("u_erin", rooms={"private:team-*": FULL}))  # a pattern
    erin.join(ROOM)
    carol.send("room", "welcome to the team", target=ROOM)
    erin.wait_message("welcome to the team")
    screenshot(carol.driver, "private-room")
