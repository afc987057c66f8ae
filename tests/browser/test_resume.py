"""The demo page resumes after a drop: what it missed is shown once, in order, nothing twice.

The page runs on the JS client, which tracks the last seq delivered per stream. Here its connection is closed the way a
deployed backend kicks a client (``DELETE @connections/{id}``) while Chromium's network is
emulated offline, so its reconnect attempts fail while another client (a plain WebSocket)
talks in the room; back online, the client rejoins, resumes, and pages the rest with history.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from websockets.sync.client import ClientConnection

from tests.browser.conftest import BrowserFactory, SwitchboardGateway
from tests.browser.test_chat import ChatPage, page_url
from tests.wsclient import open_ws, recv_json

pytestmark = [pytest.mark.browser, pytest.mark.timeout(90)]

_refs = itertools.count(1)


def request(ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
    """Send ``frame`` with a fresh ref; its reply (message frames meanwhile are skipped)."""
    ref = next(_refs)
    ws.send(json.dumps({**frame, "ref": ref}))
    while True:
        reply: dict[str, Any] = recv_json(ws)
        if reply.get("ref") == ref:
            return reply


def set_offline(page: ChatPage, offline: bool) -> None:
    """Chromium's DevTools network emulation: offline, new WebSockets fail to connect."""
    page.driver.execute_cdp_cmd("Network.enable", {})
    page.driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


# Test-only: WebSocket.send holds back the page's resume frames until released, so that a
# message can reach the page live before the replay that also carries it.
HOLD_RESUME = """
const send = WebSocket.prototype.send;
window.heldResumes = [];
window.releaseResumes = () => { for (const [ws, data] of window.heldResumes.splice(0)) send.call(ws, data); };
WebSocket.prototype.send = function (data) {
  if (String(data).includes('"action":"resume"')) window.heldResumes.push([this, data]);
  else send.call(this, data);
};
"""


def incoming(page: ChatPage) -> list[tuple[str, str, str | None]]:
    """(text, stream:seq, missed) of every incoming message shown, top to bottom."""
    return [
        (
            li.find_element(By.CSS_SELECTOR, ".body").text,
            f"{li.get_attribute('data-stream')}:{li.get_attribute('data-seq')}",
            li.get_attribute("data-missed"),
        )
        for li in page.all("#messages li.msg.in")
    ]


def test_page_resumes_after_a_drop_and_shows_every_missed_message_exactly_once(
    browser: BrowserFactory, switchboard_gateway: SwitchboardGateway
) -> None:
    # A resume replays at most 3 messages per stream: the page pages the rest with history.
    gateway = switchboard_gateway(env={"HISTORY_MAX_REPLAY": "3"})
    alice = ChatPage.open(browser("alice"), page_url(gateway))
    first = alice.connect("u_alice")
    alice.join("lobby")
    with open_ws(gateway, "userId=u_bob") as bob:
        assert request(bob, {"action": "join", "room": "lobby"})["joined"] is True
        # Seqs from the acks: the room stream also logs presence events (enter/leave).
        seqs = [request(bob, {"action": "sendRoom", "room": "lobby", "text": "before 1"})["seq"]]
        alice.wait_message("before 1")
        alice.send("room", "mine before", target="lobby")  # its ack gives the page its seq
        assert alice.sent_state("mine before") == "delivered to 1"
        assert recv_json(bob)["text"] == "mine before"

        set_offline(alice, True)
        gateway.management_client().delete_connection(ConnectionId=first)
        alice.until(lambda _: alice.status()[0] == "reconnecting", "the page to notice the drop")
        away = [f"while away {i}" for i in range(1, 8)]
        away_seqs: list[int] = []
        for text in away:
            ack = request(bob, {"action": "sendRoom", "room": "lobby", "text": text})
            assert ack["type"] == "ack" and ack["delivered"] == 0  # nobody else in the room now
            away_seqs.append(ack["seq"])
        alice.driver.execute_script(HOLD_RESUME)
        set_offline(alice, False)

        # The client reports open only once whoami, the rejoin and the resume are answered: its
        # resume goes out after the rejoin's ack, so with it held the page is back in the room.
        alice.until(lambda d: d.execute_script("return window.heldResumes.length"), "a resume", 20)
        assert alice.status()[0] == "reconnecting"
        # Resume not sent yet: this one comes live, and again in the replay.
        seqs.append(
            request(bob, {"action": "sendRoom", "room": "lobby", "text": "live while resuming"})[
                "seq"
            ]
        )
        alice.driver.execute_script("window.releaseResumes()")
        second = alice.wait_online(timeout=20)
        assert second != first
        alice.wait_joined("lobby")
        alice.wait_message("live while resuming")
        alice.until(
            lambda _: any(line.startswith("Caught up: 7 missed") for line in alice.system_lines()),
            "the page to resume and page through history",
        )
        ack = request(bob, {"action": "sendRoom", "room": "lobby", "text": "after"})
        assert ack["delivered"]
        seqs.append(ack["seq"])
        alice.wait_message("after")

    shown = incoming(alice)
    texts = [text for text, _, _ in shown]
    # Each once, in seq order: the live one waited for the gap before it to be filled.
    assert texts == ["before 1", *away, "live while resuming", "after"]
    positions = [where for _, where, _ in shown]
    assert len(set(positions)) == len(positions)
    assert positions == [f"room:lobby:{seq}" for seq in (seqs[0], *away_seqs, *seqs[1:])]
    assert seqs[0] < away_seqs[0] and away_seqs == sorted(away_seqs) and away_seqs[-1] < seqs[1]
    assert all(missed == "true" for _, _, missed in shown[1:-2])
    assert [missed for _, _, missed in (shown[0], *shown[-2:])] == [None, None, None]  # live ones
    assert texts.count("mine before") == 0  # its own message is not shown back as incoming
    assert len(alice.all("#messages li.msg.out")) == 1
    # The page runs on the JS client (clients/js), not socket code of its own.
    assert alice.driver.execute_script("return document.documentElement.dataset.client") == (
        "switchboard-js"
    )
