"""Permissions on the local stack in AUTH_MODE=jwt: real sockets, the app's authorizer function
run by the gateway's Lambda Invoke API, the HTTP revocation route."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from local_gateway import LocalGateway
from tests.e2e.helpers import REPO_ROOT
from tests.gateways import http, wait_until
from tests.helpers import JWT_ENV
from tests.helpers import token as mint
from tests.wsclient import quiet, recv_json, send

FULL = ["join", "send", "history", "presence"]
AUTHORIZER = "lambda:authorize_support"  # the gateway's invocation log names it so


def token(sub: str, **claims: Any) -> str:
    """A token as a deployed stage takes it (tests.helpers puts the issuer and audience of
    JWT_ENV in it)."""
    return mint(sub, **claims)


def jwt_gateway(gateway_factory: Any, **env: str) -> LocalGateway:
    gw: LocalGateway = gateway_factory(REPO_ROOT, auth_mode="jwt", env={**JWT_ENV, **env})
    return gw


@pytest.fixture
def jgw(gateway_factory: Any) -> LocalGateway:
    return jwt_gateway(gateway_factory)


def connect(ws_connect: Any, gw: LocalGateway, user: str, **claims: Any) -> Any:
    return ws_connect(gw, f"token={token(user, **claims)}")


def refused(reply: dict[str, Any], operation: str, room: str) -> bool:
    return reply.get("code") == "forbidden" and reply["message"] == (
        f"missing operation {operation!r} on room {room!r}"
    )


def reply_to(ws: Any, frame: dict[str, Any], skip: tuple[str, ...] = ("presence",)) -> Any:
    """Send ``frame``; its reply, passing over live events of the kinds in ``skip``."""
    ws.send(json.dumps(frame))
    while True:
        got = recv_json(ws)
        if got.get("type") not in skip:
            return got


def test_private_rooms_need_each_operation_from_the_token(
    jgw: LocalGateway, ws_connect: Any
) -> None:
    room = "private:team-42"
    owner = connect(ws_connect, jgw, "u_owner", rooms={room: FULL})
    member = connect(ws_connect, jgw, "u_member", rooms={"private:team-*": ["join"]})
    eve = connect(ws_connect, jgw, "u_eve")
    assert send(owner, {"action": "join", "room": room})["joined"] is True
    assert send(owner, {"action": "sendRoom", "room": room, "text": "before"})["type"] == "ack"

    assert refused(send(eve, {"action": "join", "room": room}), "join", room)
    assert send(eve, {"action": "history", "stream": f"room:{room}"})["code"] == "forbidden"
    assert (
        "refused"
        in send(eve, {"action": "resume", "streams": {f"room:{room}": 0}})["streams"][
            f"room:{room}"
        ]
    )
    assert send(eve, {"action": "members", "room": room})["code"] == "forbidden"

    # A wildcard grants the join only: no send, history, resume, members or presence.
    assert send(member, {"action": "join", "room": room})["joined"] is True
    assert refused(send(member, {"action": "sendRoom", "room": room, "text": "x"}), "send", room)
    assert refused(send(member, {"action": "history", "stream": f"room:{room}"}), "history", room)
    summary = send(member, {"action": "resume", "streams": {f"room:{room}": 0}})
    assert summary["streams"][f"room:{room}"]["refused"].startswith("missing operation 'history'")
    assert refused(send(member, {"action": "members", "room": room}), "presence", room)

    # The owner hears the member enter; the member hears nothing of presence, only messages.
    enter = recv_json(owner)
    assert (enter["type"], enter["event"], enter["userId"]) == ("presence", "enter", "u_member")
    assert send(owner, {"action": "sendRoom", "room": room, "text": "hi"})["delivered"] == 1
    assert recv_json(member)["text"] == "hi"
    member.close()
    leave = recv_json(owner)
    assert (leave["event"], leave["userId"]) == ("leave", "u_member")
    assert quiet(eve)


def test_announce_rooms_take_sends_from_admins_only(jgw: LocalGateway, ws_connect: Any) -> None:
    boss = connect(ws_connect, jgw, "ops", role="admin")
    fan = connect(ws_connect, jgw, "u_fan", rooms={"*": FULL})
    for ws in (boss, fan):
        assert send(ws, {"action": "join", "room": "announce:news"})["joined"] is True
    recv_json(boss)  # fan's enter
    reply = send(fan, {"action": "sendRoom", "room": "announce:news", "text": "x"})
    assert refused(reply, "send", "announce:news")
    assert (
        send(boss, {"action": "sendRoom", "room": "announce:news", "text": "news"})["delivered"]
        == 1
    )
    assert recv_json(fan)["text"] == "news"


def test_the_authorizer_function_runs_on_the_local_stack(
    jgw: LocalGateway, ws_connect: Any
) -> None:
    user = connect(ws_connect, jgw, "u_1", plan="pro")
    assert send(user, {"action": "join", "room": "support:u_1"})["joined"] is True
    [call] = jgw.invocations.find(AUTHORIZER)
    assert call.event == {
        "userId": "u_1",
        "room": "support:u_1",
        "operation": "join",
        "claims": {**call.event["claims"], "sub": "u_1", "plan": "pro"},
    }
    assert call.result["allow"] is True
    # Cached for this connection and room: sends and history ask nobody.
    for _ in range(3):
        assert send(user, {"action": "sendRoom", "room": "support:u_1", "text": "hi"})["type"] == (
            "ack"
        )
    assert send(user, {"action": "history", "stream": "room:support:u_1"})["type"] == "history"
    assert len(jgw.invocations.find(AUTHORIZER)) == 1
    # Someone else's support room: the function says no.
    assert refused(send(user, {"action": "join", "room": "support:u_2"}), "join", "support:u_2")
    assert len(jgw.invocations.find(AUTHORIZER)) == 2
    # An agent's rooms claim is enough: no call.
    agent = connect(ws_connect, jgw, "agent", rooms={"support:*": FULL})
    assert send(agent, {"action": "join", "room": "support:u_1"})["joined"] is True
    assert len(jgw.invocations.find(AUTHORIZER)) == 2


def test_an_authorizer_that_times_out_refuses_with_unavailable(
    gateway_factory: Any, ws_connect: Any
) -> None:
    timeout_ms = 300
    document = {
        "namespaces": {
            "support": {
                "join": "authorizer",
                "authorizer": "authorize_support",
                "authorizerTimeoutMs": timeout_ms,
            }
        }
    }
    gw = jwt_gateway(gateway_factory, ROOM_NAMESPACES=json.dumps(document))
    released = []

    def slow(event: Any) -> dict[str, Any]:
        # Longer than the namespace allows, by the timeout itself: the app must stop waiting.
        time.sleep(timeout_ms / 1000 * 3)
        released.append(event)
        return {"allow": True}

    gw.app_module.support_room_answer = slow  # what app.authorize_support calls
    user = connect(ws_connect, gw, "u_1")
    started = time.monotonic()
    reply = send(user, {"action": "join", "room": "support:u_1"})
    waited = time.monotonic() - started
    assert reply["code"] == "unavailable"
    assert waited < timeout_ms / 1000 * 3  # failed closed at the timeout, not the answer
    assert send(user, {"action": "whoami"})["rooms"] == []
    wait_until(lambda: released)


def test_an_authorizer_that_does_not_exist_fails_closed(
    gateway_factory: Any, ws_connect: Any
) -> None:
    gw = jwt_gateway(gateway_factory, AUTHORIZER_FUNCTIONS='{"authorize_support": "nope"}')
    user = connect(ws_connect, gw, "u_1")
    assert send(user, {"action": "join", "room": "support:u_1"})["code"] == "unavailable"


def test_auto_join_rooms_are_joined_at_connect(jgw: LocalGateway, ws_connect: Any) -> None:
    other = connect(ws_connect, jgw, "u_other", rooms={"private:team": FULL})
    send(other, {"action": "join", "room": "private:team"})
    mobile = connect(
        ws_connect,
        jgw,
        "u_m",
        rooms={"private:team": FULL},
        autoJoin=["lobby", "private:team", "private:secret", "support:u_m"],
    )
    identity = send(mobile, {"action": "whoami"})
    assert identity["rooms"] == ["lobby", "private:team", "support:u_m"]
    enter = recv_json(other)  # announced once the first frame came
    assert (enter["room"], enter["event"], enter["userId"]) == ("private:team", "enter", "u_m")
    assert (
        send(other, {"action": "sendRoom", "room": "private:team", "text": "welcome"})["delivered"]
        == 1
    )
    assert recv_json(mobile)["text"] == "welcome"


def test_authorize_upgrades_and_downgrades_a_live_connection(
    jgw: LocalGateway, ws_connect: Any
) -> None:
    ws = connect(ws_connect, jgw, "u_a", rooms={"private:a": FULL})
    peer = connect(ws_connect, jgw, "u_peer", rooms={"private:a": FULL})
    send(peer, {"action": "join", "room": "private:a"})
    assert send(ws, {"action": "join", "room": "private:a"})["joined"] is True
    assert refused(send(ws, {"action": "join", "room": "private:b"}), "join", "private:b")
    recv_json(peer)  # u_a's enter

    upgrade = token("u_a", rooms={"private:a": FULL, "private:b": FULL})
    reply = send(ws, {"action": "authorize", "token": upgrade, "ref": 1})
    assert reply["type"] == "authorized" and reply["ref"] == 1 and reply["expiresAt"] > 0
    assert send(ws, {"action": "join", "room": "private:b"})["joined"] is True

    downgrade = token("u_a", rooms={"private:b": FULL})
    ws.send(json.dumps({"action": "authorize", "token": downgrade, "ref": 2}))
    assert recv_json(ws) == {"type": "removed", "room": "private:a", "reason": "capability"}
    assert recv_json(ws)["type"] == "authorized"
    leave = recv_json(peer)
    assert (leave["room"], leave["event"], leave["userId"]) == ("private:a", "leave", "u_a")

    assert send(ws, {"action": "authorize", "token": "nope", "ref": 3})["code"] == "bad_token"
    other = send(ws, {"action": "authorize", "token": token("u_b", rooms={"*": FULL})})
    assert other["code"] == "forbidden"
    assert send(ws, {"action": "whoami"})["rooms"] == ["private:b"]
    assert refused(send(ws, {"action": "join", "room": "private:a"}), "join", "private:a")


def test_a_frame_after_exp_gets_token_expired_then_the_close(
    jgw: LocalGateway, ws_connect: Any
) -> None:
    lifetime = 2
    ws = ws_connect(jgw, f"token={token('u_a', exp_in=lifetime)}")
    assert send(ws, {"action": "ping"})["type"] == "pong"
    issued = int(time.time())
    time.sleep(max(0.0, issued + lifetime + 1 - time.time()))  # past the token's own exp
    reply = send(ws, {"action": "ping", "ref": 9})
    assert reply["code"] == "token_expired" and reply["ref"] == 9
    with pytest.raises(ConnectionClosed):
        ws.recv(timeout=5)


def test_an_admin_removes_a_user_from_a_room(jgw: LocalGateway, ws_connect: Any) -> None:
    target = connect(ws_connect, jgw, "u_t")
    stays = connect(ws_connect, jgw, "u_s")
    send(stays, {"action": "join", "room": "lobby"})
    send(target, {"action": "join", "room": "lobby"})
    recv_json(stays)  # u_t's enter
    admin = f"Bearer {token('ops', role='admin')}"
    assert http(jgw, "DELETE", "/rooms/lobby/members/u_t", auth=admin) == (
        200,
        {"room": "lobby", "userId": "u_t", "removed": 1},
    )
    assert recv_json(target) == {"type": "removed", "room": "lobby", "reason": "revoked"}
    leave = recv_json(stays)
    assert (leave["event"], leave["userId"]) == ("leave", "u_t")
    user = f"Bearer {token('u_s')}"
    assert http(jgw, "DELETE", "/rooms/lobby/members/u_s", auth=user)[0] == 403
