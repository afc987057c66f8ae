"""Back-end events end to end: the app on the local gateway publishes to the embedded
EventBridge, whose catch-all rule feeds the sink at GET /events; the push rule invokes the
push notifier in-process. Every detail is checked against docs/events/*.schema.json.

One test per removal path (``$disconnect``, a 410 prune, an expired token, a kick), each with
its deduplication id; presence; an undelivered direct message reaching the notifier; and the
delivery latency to connected clients with events on and off, measured in one run.
"""

from __future__ import annotations

import base64
import json
import statistics
import time
import urllib.request
from typing import Any

import pytest
from websockets.sync.client import ClientConnection

from deploy.project import stage
from local_gateway import LocalGateway
from tests import bus_schemas
from tests.e2e.helpers import REPO_ROOT
from tests.gateways import GatewayFactory, http
from tests.helpers import SECRET, token
from tests.wsclient import recv_json, send


@pytest.fixture
def bus_gw(gateway_factory: GatewayFactory) -> LocalGateway:
    return gateway_factory(REPO_ROOT, auth_mode="none", events=True)


def sink(gw: LocalGateway, detail_type: str, **match: Any) -> dict[str, Any]:
    """The first event of ``detail_type`` whose detail has ``match``; its detail, validated."""
    assert gw.local_events is not None

    def wanted(event: dict[str, Any]) -> bool:
        detail = event.get("detail", {})
        return event.get("detail-type") == detail_type and all(
            detail.get(k) == v for k, v in match.items()
        )

    event = gw.local_events.wait_for(wanted, timeout=10)
    assert event["source"] == "switchboard"
    bus_schemas.validate(detail_type, event["detail"])
    return dict(event["detail"])


def all_of(gw: LocalGateway, detail_type: str) -> list[dict[str, Any]]:
    assert gw.local_events is not None
    return [e["detail"] for e in gw.local_events.events() if e["detail-type"] == detail_type]


def whoami(ws: ClientConnection) -> dict[str, Any]:
    return send(ws, {"action": "whoami", "ref": "me"})


def test_connect_and_close_publish_opened_and_closed_with_the_close_code(
    bus_gw: LocalGateway, ws_connect: Any
) -> None:
    ws = ws_connect(bus_gw, "userId=u_a")
    cid = whoami(ws)["connectionId"]
    opened = sink(bus_gw, "Connection Opened", connectionId=cid)
    assert (opened["eventId"], opened["userId"]) == (f"opened:{cid}", "u_a")
    ws.close(code=4001, reason="bye")
    closed = sink(bus_gw, "Connection Closed", connectionId=cid)
    assert (closed["eventId"], closed["reason"], closed["closeCode"]) == (
        f"closed:{cid}", "disconnect", 4001,
    )  # fmt: skip
    assert closed["durationMs"] == closed["closedAt"] - opened["connectedAt"] >= 0


def test_a_kick_publishes_kicked_once_though_its_close_runs_disconnect(
    bus_gw: LocalGateway, ws_connect: Any
) -> None:
    ws = ws_connect(bus_gw, "userId=u_k")
    cid = whoami(ws)["connectionId"]
    assert http(bus_gw, "DELETE", f"/connections/{cid.replace('=', '%3D')}")[0] == 204
    bus_gw.invocations.wait_for("$disconnect", cid, timeout=10)
    closed = sink(bus_gw, "Connection Closed", connectionId=cid)
    assert (closed["reason"], closed["eventId"]) == ("kicked", f"closed:{cid}")
    assert [c["connectionId"] for c in all_of(bus_gw, "Connection Closed")].count(cid) == 1


def test_an_expired_token_publishes_expired(
    gateway_factory: GatewayFactory, ws_connect: Any
) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="jwt", env={"JWT_SECRET": SECRET}, events=True)
    dev = stage("dev").environment  # the stage's issuer and audience: its tokens carry them
    short = token("u_exp", exp_in=2, iss=dev["JWT_ISSUER"], aud=dev["JWT_AUDIENCE"])
    ws = ws_connect(gw, f"token={short}")
    cid = whoami(ws)["connectionId"]
    expires_at = json.loads(base64.urlsafe_b64decode(short.split(".")[1] + "=="))["exp"]
    while time.time() <= expires_at:  # until the token's own exp has passed
        time.sleep(0.1)
    ws.send(json.dumps({"action": "ping", "ref": 1}))
    closed = sink(gw, "Connection Closed", connectionId=cid)
    assert (closed["reason"], closed["userId"], closed["eventId"]) == (
        "expired", "u_exp", f"closed:{cid}",
    )  # fmt: skip


def test_a_dm_to_a_connection_gone_without_disconnect_prunes_it_and_is_undelivered(
    bus_gw: LocalGateway, ws_connect: Any
) -> None:
    """A registered connection whose socket is gone (its $disconnect lost): the post answers
    410, the prune publishes ``gone`` and, every post of the DM being 410, it is undelivered."""
    ghost = "GhostGhost12345="
    switchboard = bus_gw.app_module.get_switchboard()
    switchboard.registry.register(
        ghost,
        "u_ghost",
        int(time.time() * 1000),
        endpoint=bus_gw.urls.management,  # type: ignore[union-attr]
    )
    ws = ws_connect(bus_gw, "userId=u_a")
    reply = send(
        ws, {"action": "sendMessage", "targetUserId": "u_ghost", "text": "there?", "ref": 1}
    )
    assert reply["type"] == "ack", reply  # the sender learns nothing of the recipient's state
    closed = sink(bus_gw, "Connection Closed", connectionId=ghost)
    assert (closed["reason"], closed["closeCode"], closed["eventId"]) == (
        "gone", None, f"closed:{ghost}",
    )  # fmt: skip
    undelivered = sink(bus_gw, "Message Undelivered", to="u_ghost")
    assert (undelivered["reason"], undelivered["messageId"]) == ("gone", reply["id"])
    assert undelivered["eventId"] == (
        f"undelivered:user:u_ghost:{undelivered['epoch']}:{undelivered['seq']}"
    )


def test_presence_enter_and_leave_are_published(bus_gw: LocalGateway, ws_connect: Any) -> None:
    a = ws_connect(bus_gw, "userId=u_p1")
    b = ws_connect(bus_gw, "userId=u_p2")
    assert send(a, {"action": "join", "room": "lobby", "ref": 1})["joined"]
    assert send(b, {"action": "join", "room": "lobby", "ref": 1})["joined"]
    assert recv_json(a)["event"] == "enter"
    b.send(json.dumps({"action": "leave", "room": "lobby", "ref": 2}))
    entered = sink(bus_gw, "Presence Entered", userId="u_p2")
    left = sink(bus_gw, "Presence Left", userId="u_p2")
    assert (entered["room"], entered["event"], left["event"]) == ("lobby", "enter", "leave")
    assert left["seq"] > entered["seq"]
    assert left["eventId"] == f"presence:room:lobby:{left['epoch']}:{left['seq']}"


def test_an_undelivered_dm_reaches_the_push_notifier_and_the_phone(
    bus_gw: LocalGateway, ws_connect: Any
) -> None:
    """The offline push path of docs/PUSH.md, offline: register a device for u_off with the
    /me route, send u_off a DM while they have no connection; the rule invokes the notifier,
    which publishes to the device's SNS endpoint (moto's)."""
    status, device = http(
        bus_gw, "POST", "/me/devices?userId=u_off", {"platform": "fcm", "token": "phone-1"}
    )
    assert status == 200, device
    ws = ws_connect(bus_gw, "userId=u_a")
    reply = send(ws, {"action": "sendMessage", "targetUserId": "u_off", "text": "dinner at 8?"})
    assert reply["type"] == "ack", reply  # stored for their resume, whether online or not
    undelivered = sink(bus_gw, "Message Undelivered", to="u_off")
    assert (undelivered["reason"], undelivered["preview"], undelivered["from"]) == (
        "no_connections", "dinner at 8?", "u_a",
    )  # fmt: skip
    [push] = bus_gw.invocations.wait_for("events:push-undelivered", timeout=10)
    assert push.error is None, push.error
    assert push.event["detail"]["eventId"] == undelivered["eventId"]
    assert push.result == {"devices": 1, "sent": 1, "disabled": 0, "skipped": 0, "failed": 0}


def test_a_room_that_publishes_has_its_messages_on_the_bus(
    gateway_factory: GatewayFactory, ws_connect: Any
) -> None:
    """A room whose namespace opts in to ``published`` (its ``events`` option): every message,
    whole; a room of a namespace that does not (the default) publishes nothing."""
    document = {"namespaces": {"archive": {"events": ["presence", "published"]}}}
    bus_gw = gateway_factory(
        REPO_ROOT, auth_mode="none", events=True, env={"ROOM_NAMESPACES": json.dumps(document)}
    )
    ws = ws_connect(bus_gw, "userId=u_pub")
    for room in ("archive:x", "lobby"):
        assert send(ws, {"action": "join", "room": room, "ref": room})["joined"]
    ack = send(ws, {"action": "sendRoom", "room": "archive:x", "text": "keep me", "ref": 1})
    send(ws, {"action": "sendRoom", "room": "lobby", "text": "not me", "ref": 2})
    published = sink(bus_gw, "Message Published", room="archive:x")
    assert (published["text"], published["from"], published["seq"], published["messageId"]) == (
        "keep me", "u_pub", ack["seq"], ack["id"],
    )  # fmt: skip
    assert (published["epoch"], published["eventId"]) == (
        ack["epoch"], f"published:room:archive:x:{ack['epoch']}:{ack['seq']}",
    )  # fmt: skip
    ws.close()
    sink(bus_gw, "Connection Closed", userId="u_pub")  # everything it caused is out by now
    assert [p["room"] for p in all_of(bus_gw, "Message Published")] == ["archive:x"]


def test_the_sink_page_lists_the_events_as_json(bus_gw: LocalGateway, ws_connect: Any) -> None:
    ws = ws_connect(bus_gw, "userId=u_page")
    cid = whoami(ws)["connectionId"]
    sink(bus_gw, "Connection Opened", connectionId=cid)
    base = bus_gw.urls.websocket.replace("ws://", "http://", 1).rsplit("/", 1)[0]  # type: ignore[union-attr]
    with urllib.request.urlopen(f"{base}/events?detailType=Connection%20Opened", timeout=5) as r:
        page = json.loads(r.read())
    assert page["bus"] == "switchboard-local"
    assert cid in [e["detail"]["connectionId"] for e in page["events"]]
    assert {e["detail-type"] for e in page["events"]} == {"Connection Opened"}


def _pair(gw: LocalGateway, ws_connect: Any) -> tuple[ClientConnection, ClientConnection, str]:
    """A sender and a receiver in one room (the sender has seen the receiver enter); the
    sender's connection id."""
    sender = ws_connect(gw, "userId=u_s")
    receiver = ws_connect(gw, "userId=u_r")
    for ws in (sender, receiver):
        assert send(ws, {"action": "join", "room": "lat", "ref": "j"})["joined"]
    assert recv_json(sender)["event"] == "enter"
    return sender, receiver, whoami(sender)["connectionId"]


def _delivery_ms(
    gw: LocalGateway,
    pair: tuple[ClientConnection, ClientConnection, str],
    n: int,
    settle: bool,
    published: list[int] | None = None,
) -> list[float]:
    """Send ``n`` room messages one at a time; ms from each send to its delivery to the other
    member. ``settle``: before the next send, wait for the previous handler to finish (its
    flush included) and, when ``published`` counts the events so far, for its event to reach
    the sink, so each sample is one message's own path; else back to back after the ack, as
    a chatty client sends."""
    sender, receiver, cid = pair
    samples = []
    for i in range(n):
        done = len(gw.invocations.find("$default", cid))
        started = time.perf_counter()
        sender.send(json.dumps({"action": "sendRoom", "room": "lat", "text": f"m{i}", "ref": i}))
        while recv_json(receiver, timeout=10).get("type") != "message":
            pass
        samples.append((time.perf_counter() - started) * 1000)
        assert recv_json(sender, timeout=10)["type"] == "ack"
        if settle:
            gw.invocations.wait_for("$default", cid, timeout=10, count=done + 1)
            if published is not None:  # and until its event has gone through the local bus
                published[0] += 1
                _wait_published(gw, published[0])
    return samples


def _wait_published(gw: LocalGateway, count: int) -> None:
    assert gw.local_events is not None
    sink = gw.local_events

    def enough(_: dict[str, Any]) -> bool:
        return sum(e["detail-type"] == "Message Published" for e in sink.events()) >= count

    sink.wait_for(enough, timeout=15)


def test_delivery_latency_is_unchanged_with_events_on(
    gateway_factory: GatewayFactory, ws_connect: Any, record_property: Any
) -> None:
    """One stack (two gateways cannot share a process: the environment is process-wide), its
    publisher switched off and on between alternating batches so drift hits both alike. While
    on, every room message is published ("Message Published": one PutEvents per send), after
    the fan-out and the ack, so a message's delivery does not wait for its event.

    Measured two ways: settled (each send after the previous handler finished and its event
    went through the local bus: one message's own path, the claim) and back to back (the next send right after the ack: locally the
    previous handler's PutEvents then competes with the next one's DynamoDB calls on the one
    embedded moto server, which serves one request at a time and shares 2 cores; on AWS they
    are separate services). Both are printed; the settled medians are asserted."""
    gw = gateway_factory(
        REPO_ROOT,
        auth_mode="none",
        events=True,
        # No rate limit in the way of the samples.
        env={"MESSAGE_RATE": "10000", "MESSAGE_BURST": "10000"},
    )
    pair = _pair(gw, ws_connect)
    events = gw.app_module.get_switchboard().events
    publisher = events.publisher
    assert publisher is not None and gw.local_events is not None
    runs: dict[tuple[str, bool], list[float]] = {
        (mode, on): [] for mode in ("settled", "back-to-back") for on in (False, True)
    }
    published = [0]
    _delivery_ms(gw, pair, 5, settle=False)  # warm-up (first calls, connection pools)
    try:
        for _ in range(3):
            for mode in ("settled", "back-to-back"):
                for on in (False, True):
                    events.publisher = publisher if on else None
                    events.emits = lambda room, kind, on=on: on  # type: ignore[misc]
                    settle = mode == "settled"
                    counter = published if settle and on else None
                    runs[(mode, on)] += _delivery_ms(gw, pair, 15, settle, counter)
                    if on and not settle:
                        published[0] += 15
                        _wait_published(gw, published[0])
    finally:
        events.publisher = publisher
    report = {
        f"{mode} {'on' if on else 'off'}": (
            round(statistics.median(v), 2),
            round(statistics.quantiles(v, n=10)[-1], 2),
        )
        for (mode, on), v in runs.items()
    }
    record_property("delivery_ms_median_p90", report)
    print("\ndelivery ms (median, p90):", json.dumps(report))
    settled_off = statistics.median(runs[("settled", False)])
    settled_on = statistics.median(runs[("settled", True)])
    # Unchanged within noise: a PutEvents before the fan-out would add a whole call each time.
    assert settled_on <= settled_off * 1.25 + 2.0, report
