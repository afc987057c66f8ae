"""Permissions end to end through the app's handlers (AUTH_MODE=jwt, moto): namespaces, the
token's ``rooms`` and ``autoJoin`` claims, the authorizer function, ``authorize``, revocation."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from chalice.test import Client

import app as app_module
from chalicelib import namespaces
from chalicelib.authorizer import Authorizer, support_room_answer
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from tests.conftest import Clock, make_switchboard
from tests.helpers import FakeGateway, connect_event, message_event, token

FULL = ["join", "send", "history", "presence"]


class FakeLambda:
    """The authorizer function as Lambda would run it: app.py's example by default; records
    every call; ``fail`` makes the next calls raise (a timeout, as botocore raises it)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail: BaseException | None = None
        self.answer = support_room_answer

    def __call__(self, function: str, payload: bytes, timeout: float) -> tuple[bytes, None]:
        request = json.loads(payload)
        self.calls.append(request)
        if self.fail is not None:
            raise self.fail
        return json.dumps(self.answer(request)).encode(), None


@pytest.fixture
def fn() -> FakeLambda:
    return FakeLambda()


@pytest.fixture
def board(registry: Registry, gateway: FakeGateway, fn: FakeLambda) -> Switchboard:
    sb = make_switchboard(registry, gateway, auth_mode="jwt")
    sb.access.authorizer = Authorizer(fn, {"authorize_support": "fn"}, clock=registry.now)
    return sb


@pytest.fixture
def client(board: Switchboard) -> Iterator[Client]:
    app_module.reset_switchboard(board)
    try:
        with Client(app_module.app) as chalice_client:
            yield chalice_client
    finally:
        app_module.reset_switchboard(None)


class Harness:
    def __init__(self, client: Client, gateway: FakeGateway) -> None:
        self.client = client
        self.gateway = gateway

    def connect(self, cid: str, user: str, **claims: Any) -> dict[str, Any]:
        event = connect_event(cid, {"token": token(user, **claims)})
        payload: dict[str, Any] = self.client.lambda_.invoke("connect", event).payload
        return payload

    def send(self, cid: str, frame: dict[str, Any]) -> dict[str, Any]:
        """The reply to ``frame`` (presence and removed frames sent meanwhile left aside)."""
        before = len(self.gateway.sent.get(cid, []))
        self.client.lambda_.invoke("message", message_event(cid, frame))
        replies = [
            f
            for f in self.gateway.frames(cid)[before:]
            if f["type"] not in ("presence", "removed", "message", "replay")
        ]
        assert len(replies) == 1, replies
        return replies[0]

    def frames(self, cid: str, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.gateway.frames(cid) if f["type"] == kind]

    def replayed(self, cid: str) -> list[dict[str, Any]]:
        """The entries a resume replayed to ``cid``, in wire order (``replay`` frames)."""
        return [m for f in self.frames(cid, "replay") for m in f["messages"]]


@pytest.fixture
def h(client: Client, gateway: FakeGateway) -> Harness:
    return Harness(client, gateway)


def refused(reply: dict[str, Any], operation: str, room: str) -> bool:
    return (
        reply["type"] == "error"
        and reply["code"] == "forbidden"
        and reply["message"] == (f"missing operation {operation!r} on room {room!r}")
    )


# --- capability namespaces (private:) --------------------------------------------------------


def test_without_the_capability_a_user_can_do_nothing_in_a_private_room(h: Harness) -> None:
    h.connect("owner", "u_own", rooms={"private:team": FULL})
    h.connect("eve", "u_eve")
    assert h.send("owner", {"action": "join", "room": "private:team"})["joined"] is True
    assert (
        h.send("owner", {"action": "sendRoom", "room": "private:team", "text": "secret"})["type"]
        == "ack"
    )
    assert refused(
        h.send("eve", {"action": "join", "room": "private:team"}), "join", "private:team"
    )
    # Not a member, so history, resume and members are refused as before (membership first).
    history = h.send("eve", {"action": "history", "stream": "room:private:team"})
    assert history["code"] == "forbidden"
    resumed = h.send("eve", {"action": "resume", "streams": {"room:private:team": 0}})
    assert "refused" in resumed["streams"]["room:private:team"]
    assert h.frames("eve", "message") == []


def test_each_operation_needs_its_own_grant(h: Harness) -> None:
    room = "private:ops"
    h.connect("full", "u_full", rooms={room: FULL})
    h.connect("join", "u_join", rooms={room: ["join"]})
    h.send("full", {"action": "join", "room": room})
    assert h.send("join", {"action": "join", "room": room})["joined"] is True
    assert refused(h.send("join", {"action": "sendRoom", "room": room, "text": "x"}), "send", room)
    assert refused(h.send("join", {"action": "history", "stream": f"room:{room}"}), "history", room)
    resumed = h.send("join", {"action": "resume", "streams": {f"room:{room}": 0}})
    assert resumed["streams"][f"room:{room}"]["refused"] == (
        f"missing operation 'history' on room {room!r}"
    )
    assert refused(h.send("join", {"action": "members", "room": room}), "presence", room)
    # With the grants, all of it works.
    assert h.send("full", {"action": "sendRoom", "room": room, "text": "hi"})["type"] == "ack"
    assert h.send("full", {"action": "history", "stream": f"room:{room}"})["type"] == "history"
    assert h.send("full", {"action": "members", "room": room})["count"] == 2


def test_presence_goes_only_to_members_granted_it(h: Harness, gateway: FakeGateway) -> None:
    room = "private:p"
    h.connect("seer", "u_seer", rooms={room: FULL})
    h.connect("blind", "u_blind", rooms={room: ["join", "send"]})
    h.send("seer", {"action": "join", "room": room})
    h.send("blind", {"action": "join", "room": room})
    h.connect("late", "u_late", rooms={room: ["join"]})
    h.send("late", {"action": "join", "room": room})
    assert [f["userId"] for f in h.frames("seer", "presence")] == ["u_blind", "u_late"]
    assert h.frames("blind", "presence") == []
    # ... while messages still reach everyone.
    h.send("seer", {"action": "sendRoom", "room": room, "text": "all"})
    assert [f["text"] for f in h.frames("blind", "message")] == ["all"]


def test_wildcard_patterns_and_the_most_specific_one(h: Harness) -> None:
    h.connect("a", "u_a", rooms={"private:org-7-*": ["join"], "private:org-7-board": FULL})
    assert h.send("a", {"action": "join", "room": "private:org-7-sales"})["joined"] is True
    assert h.send("a", {"action": "join", "room": "private:org-7-board"})["joined"] is True
    assert refused(
        h.send("a", {"action": "join", "room": "private:org-8-x"}), "join", "private:org-8-x"
    )
    assert refused(
        h.send("a", {"action": "sendRoom", "room": "private:org-7-sales", "text": "x"}),
        "send",
        "private:org-7-sales",
    )
    ack = h.send("a", {"action": "sendRoom", "room": "private:org-7-board", "text": "x"})
    assert ack["type"] == "ack"


def test_a_lookalike_namespace_is_refused(h: Harness) -> None:
    h.connect("a", "u_a")
    reply = h.send("a", {"action": "join", "room": "Private:team"})
    assert reply["code"] == "bad_request" and "'private:'" in reply["message"]


def test_the_default_namespace_is_unchanged(h: Harness) -> None:
    h.connect("a", "u_a")
    h.connect("b", "u_b")
    for cid in ("a", "b"):
        assert h.send(cid, {"action": "join", "room": "lobby"})["joined"] is True
    assert h.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi"})["delivered"] == 1
    assert h.send("b", {"action": "members", "room": "lobby"})["count"] == 2


# --- announce: ----------------------------------------------------------------------------------


def test_announce_rooms_refuse_sends_from_non_admins(h: Harness) -> None:
    h.connect("boss", "u_boss", role="admin")
    h.connect("fan", "u_fan", rooms={"*": FULL})  # a claim does not make an admin
    for cid in ("boss", "fan"):
        assert h.send(cid, {"action": "join", "room": "announce:news"})["joined"] is True
    assert refused(
        h.send("fan", {"action": "sendRoom", "room": "announce:news", "text": "x"}),
        "send",
        "announce:news",
    )
    ack = h.send("boss", {"action": "sendRoom", "room": "announce:news", "text": "news"})
    assert ack["delivered"] == 1
    assert h.send("fan", {"action": "history", "stream": "room:announce:news"})["messages"]


def test_the_admin_role_may_do_everything(h: Harness) -> None:
    h.connect("boss", "u_boss", role="admin")
    for room in ("private:x", "support:u_other"):
        assert h.send("boss", {"action": "join", "room": room})["joined"] is True
        assert h.send("boss", {"action": "sendRoom", "room": room, "text": "x"})["type"] == "ack"


# --- the authorizer (support:) ---------------------------------------------------------------


def test_the_authorizer_allows_a_users_own_support_room(h: Harness, fn: FakeLambda) -> None:
    h.connect("a", "u_1", team="blue")
    assert h.send("a", {"action": "join", "room": "support:u_1"})["joined"] is True
    [call] = fn.calls
    assert call["userId"] == "u_1" and call["room"] == "support:u_1"
    assert call["operation"] == "join" and call["claims"]["team"] == "blue"
    assert call["claims"]["sub"] == "u_1"


def test_the_authorizer_denies_someone_elses(h: Harness, fn: FakeLambda) -> None:
    h.connect("a", "u_1")
    assert refused(h.send("a", {"action": "join", "room": "support:u_2"}), "join", "support:u_2")
    assert len(fn.calls) == 1


def test_an_authorizer_timeout_fails_closed_with_unavailable_and_a_log_line(
    h: Harness, fn: FakeLambda, caplog: pytest.LogCaptureFixture
) -> None:
    h.connect("a", "u_1")
    fn.fail = TimeoutError("Read timeout on endpoint URL")
    with caplog.at_level(logging.ERROR, logger="switchboard.authorizer"):
        reply = h.send("a", {"action": "join", "room": "support:u_1"})
    assert reply["code"] == "unavailable"
    assert "authorize_support unavailable (call failed: TimeoutError)" in caplog.text
    assert h.send("a", {"action": "whoami"})["rooms"] == []


def test_the_answer_is_cached_per_connection_and_room_for_its_ttl(
    h: Harness, fn: FakeLambda, clock: Clock
) -> None:
    h.connect("a", "u_1")
    h.connect("b", "u_1")  # another connection of the same user: its own cache
    h.send("a", {"action": "join", "room": "support:u_1"})
    for _ in range(3):
        assert (
            h.send("a", {"action": "sendRoom", "room": "support:u_1", "text": "x"})["type"] == "ack"
        )
    assert h.send("a", {"action": "history", "stream": "room:support:u_1"})["type"] == "history"
    assert len(fn.calls) == 1
    h.send("b", {"action": "join", "room": "support:u_1"})
    assert len(fn.calls) == 2
    clock.now += 301  # the example answers with ttlSeconds 300
    assert h.send("a", {"action": "sendRoom", "room": "support:u_1", "text": "x"})["type"] == "ack"
    assert [c["operation"] for c in fn.calls] == ["join", "join", "send"]


def test_a_member_whose_answer_ran_out_and_is_now_refused_is_removed(
    h: Harness, fn: FakeLambda, clock: Clock
) -> None:
    h.connect("a", "u_1")
    h.send("a", {"action": "join", "room": "support:u_1"})
    fn.answer = lambda request: {"allow": False}
    clock.now += 301
    reply = h.send("a", {"action": "sendRoom", "room": "support:u_1", "text": "x"})
    assert refused(reply, "send", "support:u_1")
    assert h.frames("a", "removed") == [
        {"type": "removed", "room": "support:u_1", "reason": "expired"}
    ]
    assert h.send("a", {"action": "whoami"})["rooms"] == []


def test_a_rooms_claim_needs_no_authorizer_call(h: Harness, fn: FakeLambda) -> None:
    h.connect("agent", "u_agent", rooms={"support:*": FULL})
    assert h.send("agent", {"action": "join", "room": "support:u_1"})["joined"] is True
    assert fn.calls == []


# --- autoJoin ------------------------------------------------------------------------------------


def test_auto_join_makes_a_member_from_connect_each_room_checked(
    h: Harness, gateway: FakeGateway, fn: FakeLambda
) -> None:
    h.connect("other", "u_other", rooms={"private:team": FULL})
    h.send("other", {"action": "join", "room": "lobby"})
    h.send("other", {"action": "join", "room": "private:team"})
    answer = h.connect(
        "m",
        "u_m",
        rooms={"private:team": FULL},
        autoJoin=["lobby", "private:team", "private:nope", "support:u_m", "support:u_x"],
    )
    assert answer == {"statusCode": 200}
    assert gateway.sent.get("m", []) == []  # $connect cannot post: nothing sent yet
    assert h.frames("other", "presence") == []  # enters wait for the first frame
    identity = h.send("m", {"action": "whoami"})
    assert identity["rooms"] == ["lobby", "private:team", "support:u_m"]
    # Announced side by side (departures.py): in either order.
    enters = sorted((f["room"], f["userId"]) for f in h.frames("other", "presence"))
    assert enters == [("lobby", "u_m"), ("private:team", "u_m")]
    h.send("m", {"action": "ping"})  # announced once
    assert len(h.frames("other", "presence")) == 2
    assert sorted(c["room"] for c in fn.calls) == ["support:u_m", "support:u_x"]  # side by side


@pytest.mark.parametrize(
    "claim",
    [["x"] * 1 + [f"r{i}" for i in range(10)], "lobby", [1], ["bad room"]],
    ids=["eleven", "string", "number", "bad-name"],
)
def test_a_bad_auto_join_claim_refuses_the_token(h: Harness, claim: Any) -> None:
    answer = h.connect("m", "u_m", autoJoin=claim)
    assert answer["statusCode"] == 401 and "autoJoin" in answer["body"]


def test_a_bad_rooms_claim_refuses_the_token(h: Harness) -> None:
    answer = h.connect("m", "u_m", rooms={"private:x": ["read"]})
    assert answer["statusCode"] == 401 and "'read' is not an operation" in answer["body"]


# --- authorize: re-authorization without reconnecting -------------------------------------------


def test_authorize_upgrades_a_live_connection(h: Harness, registry: Registry) -> None:
    h.connect("a", "u_a", exp_in=600)
    assert refused(h.send("a", {"action": "join", "room": "private:x"}), "join", "private:x")
    fresh = token("u_a", exp_in=3600, rooms={"private:x": FULL})
    reply = h.send("a", {"action": "authorize", "token": fresh, "ref": 1})
    record = registry.get("a")
    assert record is not None and record.token_expires_at is not None
    assert reply == {"type": "authorized", "ref": 1, "expiresAt": record.token_expires_at * 1000}
    assert h.send("a", {"action": "join", "room": "private:x"})["joined"] is True


def test_authorize_downgrades_and_leaves_rooms_no_longer_allowed(h: Harness) -> None:
    h.connect("a", "u_a", rooms={"private:x": FULL, "private:y": FULL})
    h.connect("b", "u_b", rooms={"private:x": FULL})
    for room in ("private:x", "private:y", "lobby"):
        h.send("a", {"action": "join", "room": room})
    h.send("b", {"action": "join", "room": "private:x"})
    fewer = token("u_a", rooms={"private:y": ["join"]})
    assert h.send("a", {"action": "authorize", "token": fewer})["type"] == "authorized"
    assert h.frames("a", "removed") == [
        {"type": "removed", "room": "private:x", "reason": "capability"}
    ]
    assert h.send("a", {"action": "whoami"})["rooms"] == ["lobby", "private:y"]
    assert ("private:x", "leave", "u_a") in [
        (f["room"], f["event"], f["userId"]) for f in h.frames("b", "presence")
    ]
    assert refused(
        h.send("a", {"action": "sendRoom", "room": "private:y", "text": "x"}), "send", "private:y"
    )


def test_authorize_with_a_bad_token_or_another_user_keeps_the_old_one(h: Harness) -> None:
    h.connect("a", "u_a", rooms={"private:x": FULL})
    h.send("a", {"action": "join", "room": "private:x"})
    bad = h.send("a", {"action": "authorize", "token": "not.a.jwt", "ref": 2})
    assert bad["type"] == "error" and bad["code"] == "bad_token" and bad["ref"] == 2
    other = h.send("a", {"action": "authorize", "token": token("u_b", rooms={"*": FULL})})
    assert other["code"] == "forbidden"
    expired = h.send("a", {"action": "authorize", "token": token("u_a", exp_in=-10)})
    assert expired["code"] == "bad_token"
    assert h.send("a", {"action": "sendRoom", "room": "private:x", "text": "x"})["type"] == "ack"
    assert h.frames("a", "removed") == []


# --- revocation by the back end --------------------------------------------------------------


def test_an_admin_removes_a_user_from_a_room(h: Harness, client: Client) -> None:
    h.connect("a1", "u_a")
    h.connect("a2", "u_a")
    h.connect("b", "u_b")
    for cid in ("a1", "a2", "b"):
        h.send(cid, {"action": "join", "room": "lobby"})
    headers = {"Authorization": f"Bearer {token('ops', role='admin')}"}
    response = client.http.delete("/rooms/lobby/members/u_a", headers=headers)
    assert response.status_code == 200
    assert json.loads(response.body) == {"room": "lobby", "userId": "u_a", "removed": 2}
    for cid in ("a1", "a2"):
        assert h.frames(cid, "removed") == [
            {"type": "removed", "room": "lobby", "reason": "revoked"}
        ]
        assert h.send(cid, {"action": "whoami"})["rooms"] == []
    leaves = [f for f in h.frames("b", "presence") if f["event"] == "leave"]
    assert [(f["room"], f["userId"]) for f in leaves] == [("lobby", "u_a")]
    # Not an admin: refused.
    user = {"Authorization": f"Bearer {token('u_b')}"}
    assert client.http.delete("/rooms/lobby/members/u_b", headers=user).status_code == 403


# --- namespace options: maxMembers, history since joined -------------------------------------


@pytest.fixture
def custom(registry: Registry, gateway: FakeGateway) -> Iterator[Harness]:
    config = namespaces.parse(
        {
            "namespaces": {
                "small": {"maxMembers": 2},
                "fresh": {"history": {"since": "joined"}},
                "quiet": {"history": False, "presence": False},
            }
        }
    )
    sb = make_switchboard(registry, gateway, auth_mode="jwt", namespaces=config)
    app_module.reset_switchboard(sb)
    try:
        with Client(app_module.app) as chalice_client:
            yield Harness(chalice_client, gateway)
    finally:
        app_module.reset_switchboard(None)


def test_max_members_counts_users(custom: Harness) -> None:
    h = custom
    for cid, user in (("a", "u_a"), ("a2", "u_a"), ("b", "u_b"), ("c", "u_c")):
        h.connect(cid, user)
    assert h.send("a", {"action": "join", "room": "small:1"})["joined"] is True
    assert h.send("b", {"action": "join", "room": "small:1"})["joined"] is True
    assert h.send("a2", {"action": "join", "room": "small:1"})["joined"] is True  # u_a is in
    full = h.send("c", {"action": "join", "room": "small:1"})
    assert full["code"] == "forbidden" and "full" in full["message"]


def test_history_since_joined_starts_at_the_join(custom: Harness) -> None:
    h = custom
    h.connect("a", "u_a")
    h.connect("b", "u_b")
    h.send("a", {"action": "join", "room": "fresh:1"})
    h.send("a", {"action": "sendRoom", "room": "fresh:1", "text": "before"})
    h.send("b", {"action": "join", "room": "fresh:1"})
    h.send("a", {"action": "sendRoom", "room": "fresh:1", "text": "after"})
    page = h.send("b", {"action": "history", "stream": "room:fresh:1"})
    assert [m.get("text") for m in page["messages"] if m["type"] == "message"] == ["after"]
    h.send("b", {"action": "resume", "streams": {"room:fresh:1": 0}})
    replayed = h.replayed("b")
    # Its own enter (logged after the join) and "after": nothing from before it joined.
    assert [f.get("text", f.get("event")) for f in replayed] == ["enter", "after"]
    everything = h.send("a", {"action": "history", "stream": "room:fresh:1"})
    assert [m.get("text") for m in everything["messages"] if m["type"] == "message"] == [
        "before",
        "after",
    ]


def test_history_and_presence_off(custom: Harness) -> None:
    h = custom
    h.connect("a", "u_a")
    h.connect("b", "u_b")
    h.send("a", {"action": "join", "room": "quiet:1"})
    h.send("b", {"action": "join", "room": "quiet:1"})
    assert h.frames("a", "presence") == []
    assert refused(h.send("a", {"action": "members", "room": "quiet:1"}), "presence", "quiet:1")
    assert refused(
        h.send("a", {"action": "history", "stream": "room:quiet:1"}), "history", "quiet:1"
    )


def test_history_and_resume_leave_out_presence_for_a_member_not_granted_it(h: Harness) -> None:
    room = "private:h"
    h.connect("owner", "u_owner", rooms={room: FULL})
    h.connect("reader", "u_reader", rooms={room: ["join", "history"]})
    h.send("owner", {"action": "join", "room": room})
    h.send("reader", {"action": "join", "room": room})
    h.send("owner", {"action": "sendRoom", "room": room, "text": "hello"})
    full = h.send("owner", {"action": "history", "stream": f"room:{room}"})
    assert [m["type"] for m in full["messages"]] == ["presence", "presence", "message"]
    page = h.send("reader", {"action": "history", "stream": f"room:{room}"})
    assert [m["type"] for m in page["messages"]] == ["message"]
    assert page["last"] == full["last"]  # the stream's position is still told
    h.send("reader", {"action": "resume", "streams": {f"room:{room}": 0}})
    replayed = h.replayed("reader")
    assert [f["type"] for f in replayed] == ["message"]


def test_a_namespace_with_presence_off_logs_no_presence_events(custom: Harness) -> None:
    h = custom
    h.connect("a", "u_a")
    h.connect("b", "u_b")
    h.send("a", {"action": "join", "room": "quiet:2"})
    h.send("b", {"action": "join", "room": "quiet:2"})
    h.send("a", {"action": "leave", "room": "quiet:2"})
    boss = h.connect("boss", "ops", role="admin")
    assert boss == {"statusCode": 200}
    h.send("boss", {"action": "join", "room": "quiet:2"})
    page = h.send("boss", {"action": "history", "stream": "room:quiet:2"})
    assert page["messages"] == [] and page["last"] == 0


def test_authorize_asks_about_a_support_room_joined_by_a_capability_it_drops(
    h: Harness, fn: FakeLambda
) -> None:
    h.connect("agent", "u_agent", rooms={"support:*": FULL})
    h.send("agent", {"action": "join", "room": "support:u_1"})
    assert fn.calls == []
    h.send("agent", {"action": "authorize", "token": token("u_agent")})
    assert [c["room"] for c in fn.calls] == ["support:u_1"]  # the example says no
    assert h.frames("agent", "removed") == [
        {"type": "removed", "room": "support:u_1", "reason": "capability"}
    ]


def test_a_fresh_answer_without_an_operation_refuses_it_but_keeps_the_member(
    h: Harness, fn: FakeLambda
) -> None:
    fn.answer = lambda request: {"allow": True, "operations": ["join"], "ttlSeconds": 60}
    h.connect("a", "u_1")
    h.send("a", {"action": "join", "room": "support:u_1"})
    reply = h.send("a", {"action": "sendRoom", "room": "support:u_1", "text": "x"})
    assert refused(reply, "send", "support:u_1")
    assert h.frames("a", "removed") == []
    assert h.send("a", {"action": "whoami"})["rooms"] == ["support:u_1"]
    assert len(fn.calls) == 1
