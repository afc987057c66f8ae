"""Events, not just text (issue #24), through the local gateway with raw WebSocket frames:
structured and ephemeral sends, epochs (a restarted gateway's empty log is detected as a
reset), batched replay, recent history, per-publisher order. Every frame received is checked
against docs/asyncapi.yaml (tests/e2e/conftest.py)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from local_gateway import LocalGateway
from tests.e2e.helpers import REPO_ROOT
from tests.gateways import GatewayFactory, http
from tests.wsclient import WsConnect, quiet, recv_json, send

pytestmark = pytest.mark.timeout(120)

ALICE, BOB = "u_alice", "u_bob"
ORDER = {"id": 42, "lines": [{"sku": "A-1", "qty": 2}], "note": "fragile ✓", "paid": True}


def joined(ws: ClientConnection, room: str = "lobby") -> None:
    reply = send(ws, {"action": "join", "room": room})
    assert reply.get("joined") is True, reply


def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next frame of type ``kind`` (presence events in between are passed over)."""
    for _ in range(100):
        frame: dict[str, Any] = recv_json(ws)
        if frame.get("type") == kind:
            return frame
        assert frame.get("type") == "presence", frame
    raise AssertionError(f"no {kind} frame")


def resume(
    ws: ClientConnection, streams: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Send ``resume``: the replay frames, then the ``resumed`` answer."""
    ws.send(json.dumps({"action": "resume", "streams": streams, "ref": "r"}))
    replays: list[dict[str, Any]] = []
    while True:
        frame = recv_json(ws, timeout=15)
        if frame["type"] == "resumed":
            return replays, frame
        if frame["type"] == "replay":
            replays.append(frame)


def entries(replays: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for r in replays for m in r["messages"]]


def test_a_structured_event_reaches_peers_history_and_http_unchanged(
    gw: LocalGateway, ws_connect: WsConnect
) -> None:
    alice = ws_connect(gw, f"userId={ALICE}")
    bob = ws_connect(gw, f"userId={BOB}")
    joined(alice)
    joined(bob)
    ack = send(alice, {"action": "sendRoom", "room": "lobby", "event": "order.updated",
                       "data": ORDER, "ref": 1})  # fmt: skip
    ack = ack if ack["type"] == "ack" else next_of(alice, "ack")
    live = next_of(bob, "message")
    assert (live["event"], live["data"], "text" in live) == ("order.updated", ORDER, False)
    assert (live["seq"], live["epoch"]) == (ack["seq"], ack["epoch"])
    page = send(bob, {"action": "history", "stream": "room:lobby", "latest": True, "limit": 1})
    assert page["messages"] == [live] and page["epoch"] == ack["epoch"]
    status, pushed = http(gw, "POST", "/rooms/lobby/messages", {"event": "tick", "data": [1, 2]})
    assert status == 200 and pushed["epoch"] == ack["epoch"], pushed
    tick = next_of(bob, "message")
    assert (tick["event"], tick["data"]) == ("tick", [1, 2])
    status, latest = http(gw, "GET", "/rooms/lobby/messages?latest=true&limit=2")
    assert status == 200 and latest["messages"] == [live, tick], latest


def test_an_ephemeral_send_is_delivered_but_never_logged(
    gw: LocalGateway, ws_connect: WsConnect
) -> None:
    alice = ws_connect(gw, f"userId={ALICE}")
    bob = ws_connect(gw, f"userId={BOB}")
    joined(alice)
    joined(bob)
    ack = send(alice, {"action": "sendRoom", "room": "lobby", "event": "typing", "data": True,
                       "ephemeral": True, "ref": 2})  # fmt: skip
    ack = ack if ack["type"] == "ack" else next_of(alice, "ack")
    assert ack["ephemeral"] is True and ack["delivered"] == 1
    assert not {"stream", "seq", "epoch"} & set(ack)
    typing = next_of(bob, "message")
    assert (typing["event"], typing["ephemeral"]) == ("typing", True)
    page = send(bob, {"action": "history", "stream": "room:lobby", "latest": True})
    assert typing["id"] not in {m.get("id") for m in page["messages"]}
    refused = send(alice, {"action": "sendRoom", "room": "lobby", "text": "t",
                           "ephemeral": True, "clientMsgId": "c-1"})  # fmt: skip
    refused = refused if refused["type"] == "error" else next_of(alice, "error")
    assert refused["code"] == "bad_request"


def test_a_resume_of_500_messages_comes_in_a_handful_of_replay_frames_in_seq_order(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    # One frame may replay 500 here (the default bound is 200 per frame, #22 item 1: past it
    # the client pages on with history); what is measured is how few posts carry them.
    gw = gateway_factory(
        REPO_ROOT,
        auth_mode="none",
        env={"REPLAY_MAX_MESSAGES": "500", "REPLAY_MAX_BYTES": str(4 * 1024 * 1024)},
    )
    # Back-end pushes (a WebSocket sender would meet its frame rate limit first).
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda i: http(gw, "POST", "/broadcast", {"text": f"m{i}"}), range(500))
        )
    assert sorted(a["seq"] for _, a in answers) == list(range(1, 501))
    alice = ws_connect(gw, f"userId={ALICE}")
    replays, resumed = resume(alice, {"all": 0})
    assert 1 <= len(replays) <= 5, len(replays)
    assert [m["seq"] for m in entries(replays)] == list(range(1, 501))
    assert resumed["streams"]["all"]["replayed"] == 500


def test_one_frame_in_flight_keeps_send_order_in_the_log(
    gw: LocalGateway, ws_connect: WsConnect
) -> None:
    # The per-publisher order rule (docs/RESUME.md): the next send to a stream after the ack.
    alice = ws_connect(gw, f"userId={ALICE}")
    joined(alice)
    seqs = []
    for i in range(10):
        alice.send(json.dumps({"action": "sendRoom", "room": "lobby", "text": f"m{i}"}))
        seqs.append(next_of(alice, "ack")["seq"])
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    page = send(alice, {"action": "history", "stream": "room:lobby", "latest": True})
    texts = [m["text"] for m in page["messages"] if m["type"] == "message"]
    assert texts == [f"m{i}" for i in range(10)]


def _client_run(
    gw: LocalGateway, ws_connect: WsConnect, store: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One run of a client that keeps its cursors in ``store`` (a JSON file): connect, join,
    resume from the stored cursors (then page ``history`` from ``next`` while there is one,
    as after a reset), store the cursors again."""
    cursors = json.loads(store.read_text()) if store.exists() else {"room:lobby": 0}
    ws = ws_connect(gw, f"userId={ALICE}")
    joined(ws)
    replays, resumed = resume(ws, cursors)
    summary = resumed["streams"]["room:lobby"]
    seen = entries(replays)
    nxt = summary.get("next")
    while nxt is not None:
        frame = {"action": "history", "stream": "room:lobby", "after": nxt - 1, "ref": "h"}
        page = send(ws, frame)
        page = page if page.get("type") == "history" else next_of(ws, "history")
        seen += page["messages"]
        nxt = page["next"]
    last = max([m["seq"] for m in seen], default=summary["last"])
    store.write_text(json.dumps({"room:lobby": {"epoch": summary["epoch"], "seq": last}}))
    return seen, summary


def test_a_restarted_gateway_s_empty_log_is_detected_as_a_reset(
    gateway_factory: GatewayFactory, ws_connect: WsConnect, tmp_path: Path
) -> None:
    store = tmp_path / "cursors.json"
    first = gateway_factory(REPO_ROOT, auth_mode="none")
    bob = ws_connect(first, f"userId={BOB}")
    joined(bob)
    for i in range(24):
        send(bob, {"action": "sendRoom", "room": "lobby", "text": f"old {i}"})
    seen, summary = _client_run(first, ws_connect, store)
    assert "reset" not in summary and len(seen) >= 24
    old = json.loads(store.read_text())["room:lobby"]
    assert old["seq"] >= 25 and old["epoch"]
    first.stop()

    # `make run` again: a new embedded DynamoDB, an empty table, the same client store.
    second = gateway_factory(REPO_ROOT, auth_mode="none")
    bob = ws_connect(second, f"userId={BOB}")
    joined(bob)
    fresh = [send(bob, {"action": "sendRoom", "room": "lobby", "text": f"new {i}"})
             for i in range(3)]  # fmt: skip
    assert [a["seq"] for a in fresh] == [2, 3, 4]  # seq 1: bob's enter
    seen, summary = _client_run(second, ws_connect, store)
    # Without epochs the old cursor (seq >= 25) would drop seqs 2-4 as duplicates forever.
    assert summary["reset"] is True and summary["epoch"] != old["epoch"]
    assert (summary["after"], summary["replayed"], summary["next"]) == (0, 0, 1)
    assert [m["text"] for m in seen if m["type"] == "message"] == ["new 0", "new 1", "new 2"]
    assert json.loads(store.read_text())["room:lobby"]["epoch"] == fresh[0]["epoch"]
    # A client that kept a bare number is told too: its seq is past the stream's end.
    ws = ws_connect(second, f"userId={ALICE}")
    joined(ws)
    _, bare = resume(ws, {"room:lobby": old["seq"]})
    assert bare["streams"]["room:lobby"]["reset"] is True
    # And the next run, on the stored (new) cursor, is an ordinary resume.
    seen, summary = _client_run(second, ws_connect, store)
    assert "reset" not in summary and all(m["type"] == "presence" for m in seen)
    assert quiet(ws, 0.1)


def test_member_info_in_enter_events_and_members_pages(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="none", env={"PRESENCE_MAX_LIST": "2"})
    watcher = ws_connect(gw, "userId=u_0&name=Watcher")
    joined(watcher)
    for n in range(1, 4):
        ws = ws_connect(gw, f"userId=u_{n}&name=Member%20{n}")
        joined(ws)
        enter = next_of_presence(watcher)
        assert (enter["event"], enter["userId"], enter["info"]) == ("enter", f"u_{n}", {
            "name": f"Member {n}"})  # fmt: skip
    listed: list[dict[str, Any]] = []
    cursor = None
    for _ in range(4):
        frame = {"action": "members", "room": "lobby", **({"cursor": cursor} if cursor else {})}
        page = send(watcher, frame)
        assert page["type"] == "members" and page["count"] == 4 and len(page["users"]) <= 2
        listed += page["users"]
        cursor = page.get("next")
        if cursor is None:
            break
    assert [(u["userId"], u["info"]["name"]) for u in listed] == [
        ("u_0", "Watcher"), ("u_1", "Member 1"), ("u_2", "Member 2"), ("u_3", "Member 3"),
    ]  # fmt: skip
    status, body = http(gw, "GET", "/rooms/lobby/members?cursor=u_1")
    assert status == 200 and [u["userId"] for u in body["users"]] == ["u_2", "u_3"]


def next_of_presence(ws: ClientConnection) -> dict[str, Any]:
    frame: dict[str, Any] = recv_json(ws)
    assert frame["type"] == "presence", frame
    return frame
