"""The Chalice handlers end to end on moto DynamoDB, with a fake management API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chalice.test import Client
from moto import mock_aws

import app as app_module
from chalicelib import protocol
from chalicelib.auth import Identity
from chalicelib.management_api import Outcome
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from tests.conftest import TABLE, make_switchboard
from tests.harness import Harness, harness_over
from tests.helpers import (
    SECRET,
    FakeGateway,
    connect_event,
    disconnect_event,
    message_event,
    token,
)


def test_connect_registers_and_disconnect_removes(
    harness: Harness, registry: Registry, ddb: Any
) -> None:
    assert harness.connect("c1", userId="u_123") == {"statusCode": 200}
    assert registry.get("c1").user_id == "u_123"  # type: ignore[union-attr]
    assert harness.disconnect("c1") == {"statusCode": 200}
    assert registry.get("c1") is None
    assert harness.disconnect("c1") == {"statusCode": 200}  # idempotent


def test_connect_without_user_id_gets_a_guest_identity(harness: Harness) -> None:
    harness.connect("c1")
    reply = harness.send("c1", {"action": "whoami"})
    assert reply["userId"].startswith("guest-")


def test_invalid_user_id_refuses_the_handshake(harness: Harness, registry: Registry) -> None:
    payload = harness.connect("c1", userId="u#1")
    assert payload["statusCode"] == 400
    assert registry.get("c1") is None


def test_seed_send_message_frame_reaches_every_connection_of_the_user(harness: Harness) -> None:
    harness.connect("alice", userId="u_123")
    harness.connect("bob-phone", userId="u_456")
    harness.connect("bob-laptop", userId="u_456")
    ack = harness.send(
        "alice", {"action": "sendMessage", "targetUserId": "u_456", "text": "hi", "ref": 1}
    )
    # AUTH_MODE=none: delivery receipts on by default; never the recipient stream's seq.
    assert ack == {
        "type": "ack",
        "ref": 1,
        "stored": True,
        "id": ack["id"],
        "delivered": 2,
        "failed": 0,
        "gone": 0,
    }
    for cid in ("bob-phone", "bob-laptop"):
        [msg] = harness.inbox(cid)
        assert protocol.valid_epoch(msg["epoch"])  # the recipient's stream is numbered in one
        assert (msg["from"], msg["scope"], msg["text"], msg["id"]) == (
            "u_123",
            "user",
            "hi",
            ack["id"],
        )


def test_send_to_an_offline_user_is_stored_not_an_error(harness: Harness) -> None:
    harness.connect("alice", userId="u_123")
    reply = harness.send("alice", {"action": "sendMessage", "targetUserId": "u_999", "text": "hi"})
    assert reply == {
        "type": "ack",
        "stored": True,
        "id": reply["id"],
        "delivered": 0,
        "failed": 0,
        "gone": 0,
    }


def _dm(harness: Harness, sender: str, target: str, ref: int) -> dict[str, Any]:
    return harness.send(
        sender,
        {"action": "sendMessage", "targetUserId": target, "text": "are you there?", "ref": ref},
    )


def test_a_dm_ack_is_no_online_oracle_in_jwt_mode(jwt_harness: Harness) -> None:
    """#22 item 9: whether the recipient is offline, online on one device or on three, and
    however many DMs they received, the sender's ack is the same: stored, with the id."""
    jwt_harness.connect("mallory", token=token("mallory"))
    for n in range(3):
        jwt_harness.connect(f"bob-{n}", token=token("bob"))
    jwt_harness.connect("carol", token=token("carol"))
    for n in range(4):  # bob's stream moves on: its seq would say how many DMs he got
        _dm(jwt_harness, "carol", "bob", n)
    acks = [_dm(jwt_harness, "mallory", target, i) for i, target in enumerate(["bob", "nobody"])]
    for i, ack in enumerate(acks):
        assert ack == {"type": "ack", "ref": i, "stored": True, "id": ack["id"]}
    assert len(jwt_harness.inbox("bob-0")) == 5  # bob got them all the same


def test_delivery_receipts_are_a_setting(registry: Registry, gateway: FakeGateway) -> None:
    switchboard = make_switchboard(registry, gateway, auth_mode="jwt", dm_delivery_receipts=True)
    with harness_over(switchboard, gateway) as harness:
        harness.connect("alice", token=token("alice"))
        harness.connect("bob", token=token("bob"))
        ack = _dm(harness, "alice", "bob", 1)
        assert (ack["stored"], ack["delivered"], ack["failed"], ack["gone"]) == (True, 1, 0, 0)
        assert "seq" not in ack and "stream" not in ack


def test_rooms(harness: Harness) -> None:
    for cid, user in [("a", "u1"), ("b", "u2"), ("c", "u3")]:
        harness.connect(cid, userId=user)
    assert harness.send("a", {"action": "join", "room": "lobby"})["type"] == "ack"
    harness.send("b", {"action": "join", "room": "lobby"})
    ack = harness.send("a", {"action": "sendRoom", "room": "lobby", "text": "hey"})
    assert ack["delivered"] == 1  # b; the sender is not echoed
    assert harness.inbox("b")[0]["room"] == "lobby"
    assert harness.inbox("c") == []
    assert harness.send("a", {"action": "whoami"})["rooms"] == ["lobby"]
    harness.send("b", {"action": "leave", "room": "lobby"})
    assert (
        harness.send("a", {"action": "sendRoom", "room": "lobby", "text": "again"})["delivered"]
        == 0
    )


def test_send_room_requires_membership(harness: Harness) -> None:
    harness.connect("a", userId="u1")
    harness.connect("b", userId="u2")
    harness.send("b", {"action": "join", "room": "secret"})
    reply = harness.send("a", {"action": "sendRoom", "room": "secret", "text": "let me in"})
    assert reply["code"] == "forbidden"
    assert harness.inbox("b") == []


def test_leave_a_room_not_joined_is_not_found(harness: Harness) -> None:
    harness.connect("a", userId="u1")
    assert harness.send("a", {"action": "leave", "room": "nowhere"})["code"] == "not_found"


def test_broadcast_all_reaches_everyone_else(harness: Harness) -> None:
    for i in range(12):
        harness.connect(f"c{i}", userId=f"u{i}")
    ack = harness.send("c0", {"action": "broadcastAll", "text": "all hands"})
    assert ack["delivered"] == 11
    assert all(harness.inbox(f"c{i}")[0]["scope"] == "all" for i in range(1, 12))


def test_ping_pong_with_ref(harness: Harness) -> None:
    harness.connect("a", userId="u1")
    assert harness.send("a", {"action": "ping", "ref": "p1"}) == {"type": "pong", "ref": "p1"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ("{not json", "bad_json"),
        ({"action": "teleport"}, "unknown_action"),
        ({"action": "sendMessage", "text": "hi"}, "bad_request"),
        ({"action": "join", "room": ["lobby"]}, "bad_request"),
        ({"action": "sendRoom", "room": "lobby", "text": "x" * 9000}, "too_large"),
    ],
)
def test_bad_input_gets_an_error_frame_and_disturbs_nothing(
    harness: Harness, registry: Registry, body: Any, code: str
) -> None:
    harness.connect("a", userId="u1")
    harness.connect("b", userId="u2")
    harness.send("a", {"action": "join", "room": "lobby"})
    reply = harness.send("a", body)
    assert reply["type"] == "error" and reply["code"] == code
    assert harness.inbox("b") == []
    assert registry.get("a").rooms == {"lobby"}  # type: ignore[union-attr]
    assert harness.send("a", {"action": "ping"})["type"] == "pong"


def test_base64_binary_frame_is_parsed(harness: Harness) -> None:
    import base64

    harness.connect("a", userId="u1")
    harness.client.lambda_.invoke(
        "message", message_event("a", base64.b64encode(b'{"action":"ping"}').decode(), base64=True)
    )
    assert harness.gateway.last("a") == {"type": "pong"}


def test_message_from_an_unregistered_connection_is_not_found(harness: Harness) -> None:
    reply = harness.send("ghost", {"action": "whoami"})
    assert reply["code"] == "not_found"


def test_gone_recipients_are_pruned_with_their_memberships(
    harness: Harness, registry: Registry, gateway: FakeGateway
) -> None:
    for cid in ("a", "b", "c"):
        harness.connect(cid, userId=f"user-{cid}")
        harness.send(cid, {"action": "join", "room": "lobby"})
    gateway.outcomes["b"] = Outcome.GONE
    ack = harness.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi"})
    assert (ack["delivered"], ack["gone"], ack["failed"]) == (1, 1, 0)
    assert registry.get("b") is None
    assert sorted(t.connection_id for t in registry.room_members("lobby")) == ["a", "c"]


def test_throttled_and_oversize_sends_are_reported_as_failed(
    harness: Harness, gateway: FakeGateway
) -> None:
    for cid in ("a", "b", "c"):
        harness.connect(cid, userId="u1" if cid != "a" else "u0")
    gateway.outcomes["b"] = Outcome.THROTTLED
    ack = harness.send("a", {"action": "sendMessage", "targetUserId": "u1", "text": "hi"})
    assert (ack["delivered"], ack["failed"]) == (1, 1)


def test_dynamodb_throttling_gets_the_sender_a_rate_limited_frame(
    harness: Harness, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import ClientError

    harness.connect("a", userId="u1")

    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query")

    monkeypatch.setattr(registry, "room_query", throttled)  # the audience read
    harness.send("a", {"action": "join", "room": "lobby"})
    reply = harness.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi"})
    assert reply["code"] == "rate_limited"


def test_an_unexpected_error_gets_an_internal_frame_not_a_crash(
    harness: Harness, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.connect("a", userId="u1")

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("surprise")

    monkeypatch.setattr(registry, "user_query", broken)  # the audience read
    reply = harness.send("a", {"action": "sendMessage", "targetUserId": "u2", "text": "hi"})
    assert reply["code"] == "internal"


def test_replies_go_to_the_event_endpoint(harness: Harness, gateway: FakeGateway) -> None:
    harness.connect("a", userId="u1")
    harness.send("a", {"action": "ping"})
    assert gateway.endpoints[-1] == "https://abc123def4.execute-api.us-east-1.amazonaws.com/api"


# --- auth ----------------------------------------------------------------------------------


def test_jwt_connect_refuses_without_a_valid_token(
    jwt_harness: Harness, registry: Registry
) -> None:
    assert jwt_harness.connect("a")["statusCode"] == 401
    assert jwt_harness.connect("b", token="nope")["statusCode"] == 401
    assert jwt_harness.connect("c", userId="u_1")["statusCode"] == 401
    assert jwt_harness.connect("d", token=token(exp_in=-5))["statusCode"] == 401
    assert all(registry.get(cid) is None for cid in "abcd")


def test_jwt_connect_uses_the_subject(jwt_harness: Harness) -> None:
    assert jwt_harness.connect("a", token=token("u_777")) == {"statusCode": 200}
    assert jwt_harness.send("a", {"action": "whoami"})["userId"] == "u_777"


def test_broadcast_all_needs_admin_when_auth_is_on(jwt_harness: Harness) -> None:
    jwt_harness.connect("user", token=token("u_1"))
    jwt_harness.connect("admin", token=token("ops", role="admin"))
    assert jwt_harness.send("user", {"action": "broadcastAll", "text": "x"})["code"] == "forbidden"
    assert jwt_harness.inbox("admin") == []
    assert jwt_harness.send("admin", {"action": "broadcastAll", "text": "x"})["delivered"] == 1


# --- HTTP routes ---------------------------------------------------------------------------


def test_health(harness: Harness) -> None:
    response = harness.client.http.get("/health")
    assert response.status_code == 200 and response.json_body["status"] == "ok"
    # Unauthenticated: it says the function is up and nothing about the deployment.
    assert response.json_body == {"status": "ok"}
    assert TABLE not in response.body.decode()


def test_http_push_routes_deliver_and_report(harness: Harness) -> None:
    harness.connect("a", userId="u1")
    harness.connect("b", userId="u2")
    harness.send("b", {"action": "join", "room": "ops"})
    user = harness.post("/users/u1/messages", {"text": "to u1"})
    assert user.status_code == 200 and user.json_body["delivered"] == 1
    room = harness.post("/rooms/ops/messages", {"text": "to ops"})
    assert room.json_body["delivered"] == 1
    everyone = harness.post("/broadcast", {"text": "to all"})
    assert everyone.json_body == {
        **everyone.json_body,
        "recipients": 2,
        "delivered": 2,
        "failed": 0,
    }
    assert [m["text"] for m in harness.inbox("a")] == ["to u1", "to all"]
    assert [m["text"] for m in harness.inbox("b")] == ["to ops", "to all"]


@pytest.mark.parametrize("scope", ["everyone", "users", "", "ALL"])
def test_push_to_an_unknown_scope_raises_and_sends_nothing(
    harness: Harness, switchboard: Switchboard, scope: str
) -> None:
    harness.connect("a", userId="u1")
    harness.connect("b", userId="u2")
    admin = Identity("ops", role="admin")
    with pytest.raises(ValueError, match="Scope"):
        switchboard.push(scope, "u1", {"text": "to whom?"}, admin)
    assert harness.inbox("a") == harness.inbox("b") == []
    # The same push with a real scope reaches everyone: nothing above was filtered otherwise.
    assert switchboard.push("all", None, {"text": "to all"}, admin)["delivered"] == 2


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/broadcast", "{oops", "valid JSON"),
        ("/broadcast", ["text"], "JSON object"),
        ("/broadcast", {"txt": "x"}, "'text'"),
        ("/broadcast", {"text": 5}, "'text'"),
        ("/users/bad%23id/messages", {"text": "x"}, "userId"),
        ("/rooms/" + "r" * 70 + "/messages", {"text": "x"}, "room"),
    ],
)
def test_http_bad_bodies_get_400(harness: Harness, path: str, body: Any, words: str) -> None:
    response = harness.post(path, body)
    assert response.status_code == 400
    assert words in response.json_body["error"]


def test_connections_listing_and_kick(
    harness: Harness, gateway: FakeGateway, registry: Registry
) -> None:
    for cid, user in [("a", "u1"), ("b", "u1"), ("c", "u2")]:
        harness.connect(cid, userId=user)
    listing = harness.client.http.get("/connections").json_body
    assert listing["count"] == 3 and listing["byUser"] == {"u1": 2, "u2": 1}
    assert harness.client.http.delete("/connections/b").status_code == 204
    assert gateway.closed == ["b"] and registry.get("b") is None
    assert harness.client.http.delete("/connections/zzz").status_code == 404


def test_http_routes_need_an_admin_token_when_auth_is_on(jwt_harness: Harness) -> None:
    client = jwt_harness.client
    assert jwt_harness.post("/broadcast", {"text": "x"}).status_code == 401
    assert jwt_harness.post("/broadcast", {"text": "x"}, "Bearer junk").status_code == 401
    assert (
        jwt_harness.post("/broadcast", {"text": "x"}, f"Bearer {token('u_1')}").status_code == 403
    )
    assert (
        jwt_harness.post(
            "/broadcast", {"text": "x"}, f"Bearer {token('ops', role='admin')}"
        ).status_code
        == 200
    )
    assert client.http.get("/connections").status_code == 401
    assert client.http.get("/health").status_code == 200


def test_misconfigured_stage_refuses_connections_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    app_module.reset_switchboard(None)
    # The dev stage in .chalice/config.json wants AUTH_MODE=jwt; without JWT_SECRET it must refuse.
    # Its JWT_SECRET_PARAMETER names an SSM parameter that does not exist (moto: never real AWS).
    monkeypatch.delenv("JWT_SECRET", raising=False)
    with mock_aws(), Client(app_module.app) as client:
        payload = client.lambda_.invoke("connect", connect_event("a")).payload
    assert payload["statusCode"] == 500
    app_module.reset_switchboard(None)


def test_a_stage_with_a_short_secret_refuses_connections(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app_module.reset_switchboard(None)
    monkeypatch.setenv("JWT_SECRET", "too-short")
    with Client(app_module.app) as client:
        payload = client.lambda_.invoke("connect", connect_event("a", {"token": token()})).payload
    assert payload["statusCode"] == 500
    assert "JWT_SECRET must be at least 32 bytes for HS256 (got 9)" in caplog.text
    app_module.reset_switchboard(None)


def test_table_name_comes_from_the_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.config import Settings

    seen: dict[str, str] = {}

    def fake_build(settings: Settings, session: Any = None) -> Any:
        seen["table"] = settings.table_name
        raise RuntimeError("stop here")

    app_module.reset_switchboard(None)
    monkeypatch.setattr(app_module, "build_switchboard", fake_build)
    monkeypatch.setenv("JWT_SECRET", SECRET)
    with Client(app_module.app) as client, pytest.raises(RuntimeError):
        client.lambda_.invoke("disconnect", disconnect_event("a"))
    assert seen["table"] == "switchboard-dev-connections"
    app_module.reset_switchboard(None)
    assert TABLE != seen["table"]


def test_one_json_log_line_per_event_without_tokens_or_texts(
    jwt_harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    secret_token = token("u_1")
    caplog.set_level("INFO", logger="switchboard")
    jwt_harness.connect("a", token=secret_token)
    jwt_harness.connect("b", token=token("u_2"))
    jwt_harness.send("a", {"action": "sendMessage", "targetUserId": "u_2", "text": "top secret"})
    jwt_harness.disconnect("a")
    lines = [r.getMessage() for r in caplog.records if r.name == "switchboard"]
    records = [json.loads(line) for line in lines]
    # The fan-out logs its start too: a fan-out cut short still leaves a line.
    events = [r["event"] for r in records]
    assert events == ["connect", "connect", "fanout_start", "message", "disconnect"]
    assert records[2]["scope"] == "user" and records[2]["deadlineSeconds"] == 25.0
    message = records[3]
    assert message["action"] == "SendMessage" and message["delivered"] == 1
    assert {"connectionId", "requestId", "outcome", "durationMs"} <= set(message)
    assert all(secret_token not in line and "top secret" not in line for line in lines)


def test_sending_to_yourself_reaches_your_other_connections_only(harness: Harness) -> None:
    harness.connect("phone", userId="u1")
    ack = harness.send("phone", {"action": "sendMessage", "targetUserId": "u1", "text": "note"})
    assert ack["type"] == "ack" and ack["delivered"] == 0
    harness.connect("laptop", userId="u1")
    assert (
        harness.send("phone", {"action": "sendMessage", "targetUserId": "u1", "text": "n"})[
            "delivered"
        ]
        == 1
    )
    assert [m["text"] for m in harness.inbox("laptop")] == ["n"]


def test_no_send_path_scans_the_table(
    harness: Harness, ddb: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(6):
        harness.connect(f"c{i}", userId=f"u{i % 2}")
        harness.send(f"c{i}", {"action": "join", "room": "lobby"})

    def no_scan(**kwargs: Any) -> Any:
        raise AssertionError("Scan called on a send path")

    monkeypatch.setattr(ddb, "scan", no_scan)
    assert harness.send("c0", {"action": "broadcastAll", "text": "x"})["delivered"] == 5
    assert (
        harness.send("c0", {"action": "sendRoom", "room": "lobby", "text": "x"})["delivered"] == 5
    )
    assert (
        harness.send("c0", {"action": "sendMessage", "targetUserId": "u1", "text": "x"})[
            "delivered"
        ]
        == 3
    )
    assert harness.post("/broadcast", {"text": "x"}).json_body["delivered"] == 6
    assert harness.client.http.get("/connections").json_body["count"] == 6
