"""docs/asyncapi.yaml: an AsyncAPI 3 document with a schema for every frame, and the schemas
accept the frames the server builds (the e2e suite checks the frames it really receives)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib import protocol
from chalicelib.errors import classify
from chalicelib.idempotency import AlreadySent, ClientMsgIdReused, SendInProgress
from chalicelib.message import Message
from chalicelib.replay_frames import replay_frame
from tests.asyncapi import (
    CLIENT_FRAMES,
    GATEWAY_ERROR,
    SERVER_FRAMES,
    FrameChecker,
    document,
    problems,
    server_schema,
)

# Every ``type`` the server emits: listed by hand, so a new one fails here until documented.
EMITTED_TYPES = (
    "message",
    "ack",
    "error",
    "pong",
    "identity",
    "resumed",
    "history",
    "replay",
    "members",
    "presence",
    "authorized",
    "removed",
)
EPOCH = "Qm9vdHN0cmFw"
MID = "0123456789abcdef0123456789abcdef"


def test_the_document_is_asyncapi_3_shaped() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    [channel] = doc["channels"].values()
    assert set(doc["operations"]) == {"send", "receive"}
    assert doc["operations"]["send"]["action"] == "send"
    assert doc["operations"]["receive"]["action"] == "receive"
    schemas = doc["components"]["schemas"]
    messages = doc["components"]["messages"]
    # Every channel message is a component message whose payload is a component schema, and
    # every operation's message is one of the channel's.
    for name, ref in channel["messages"].items():
        target = ref["$ref"].removeprefix("#/components/messages/")
        payload = messages[target]["payload"]["$ref"].removeprefix("#/components/schemas/")
        assert payload in schemas, name
    for operation in doc["operations"].values():
        assert operation["channel"]["$ref"] == "#/channels/switchboard"
        for ref in operation["messages"]:
            assert (
                ref["$ref"].removeprefix("#/channels/switchboard/messages/") in channel["messages"]
            )
    sent = {m["$ref"].rsplit("/", 1)[1] for m in doc["operations"]["send"]["messages"]}
    received = {m["$ref"].rsplit("/", 1)[1] for m in doc["operations"]["receive"]["messages"]}
    assert sent | received == set(channel["messages"]) and not sent & received


def test_every_frame_type_and_action_has_a_schema_in_the_right_operation() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]
    assert set(SERVER_FRAMES) == set(EMITTED_TYPES)
    assert set(CLIENT_FRAMES) == {*protocol.ACTIONS, "members"}
    payloads = {
        direction: {
            doc["components"]["messages"][m["$ref"].rsplit("/", 1)[1]]["payload"]["$ref"].rsplit(
                "/", 1
            )[1]
            for m in doc["operations"][direction]["messages"]
        }
        for direction in ("send", "receive")
    }
    assert set(CLIENT_FRAMES.values()) == payloads["send"]
    assert {*SERVER_FRAMES.values(), GATEWAY_ERROR} == payloads["receive"]
    for schema in (*SERVER_FRAMES.values(), *CLIENT_FRAMES.values(), GATEWAY_ERROR):
        assert schema in schemas


def test_error_codes_match_the_server() -> None:
    code = document()["components"]["schemas"]["ErrorFrame"]["properties"]["code"]
    assert tuple(code["enum"]) == protocol.ERROR_CODES


def _frames() -> list[dict[str, Any]]:
    message = protocol.message_frame("u_1", protocol.Scope.ROOM, "hi", "lobby")
    logged = {**message, "stream": "room:lobby", "seq": 3, "epoch": EPOCH}
    dm = {**protocol.message_frame("u_1", protocol.Scope.USER, "hi"), "stream": "user:u_2"}
    structured = protocol.message_frame(
        "u_1", protocol.Scope.ALL, None, event="order.updated", data={"id": 7, "ok": [True]}
    )
    fleeting = protocol.message_frame(
        "u_1", protocol.Scope.ROOM, None, "lobby", event="typing", data=1, ephemeral=True
    )
    # A presence event as logged (the log adds stream, seq and epoch, nothing else).
    presence = {
        **protocol.presence_frame("lobby", "enter", "u_1", {"name": "Ann", "avatar": None}),
        "stream": "room:lobby",
        "seq": 4,
        "epoch": EPOCH,
    }
    return [
        logged,
        {**dm, "seq": 1, "epoch": EPOCH},
        {**structured, "stream": "all", "seq": 2, "epoch": EPOCH},
        fleeting,
        protocol.ack_frame(1, 2, 0, 1, id=MID, stream="room:lobby", seq=3, epoch=EPOCH),
        protocol.ack_frame(1, 2, 0, 0, id=MID, ephemeral=True),
        protocol.ephemeral_ack_frame(1, MID),  # a direct message's, receipts off
        protocol.ephemeral_ack_frame(None, MID, delivered=1, failed=0, gone=0),
        AlreadySent(MID, "all", 9, EPOCH).frame("r"),
        protocol.ack_frame("j", 0, 0, room="lobby", joined=True),
        protocol.ack_frame(None, 0, 0, room="lobby", left=True),
        protocol.error_frame("bad_json", "frame is not valid UTF-8 JSON"),
        protocol.error_frame("not_found", "not a member of 'x'", 4),
        protocol.dm_ack_frame(4, MID),
        protocol.dm_ack_frame(None, MID, duplicate=True),
        protocol.dm_ack_frame(4, MID, delivered=2, failed=0, gone=1),
        protocol.dm_ack_frame(4, MID, delivered=0, failed=0, gone=0, continued=3),
        classify(SendInProgress()).frame(5),
        classify(ClientMsgIdReused()).frame(None),
        Message.new("u_1", protocol.Scope.ROOM, "hi", "lobby")
        .logged("room:lobby", 3, EPOCH)
        .to_frame(),
        Message.new("u_1", protocol.Scope.ALL, "hi").logged("all", 1, EPOCH).to_frame(),
        Message.new("u_1", protocol.Scope.ALL, None, event="typing", data=True, ephemeral=True)
        .to_frame(),
        protocol.pong_frame(),
        protocol.identity_frame("R1kmxc2VNjMCFIA=", "u_1", ["b", "a"], 7, "admin"),
        protocol.resumed_frame(
            1,
            {
                "room:lobby": {"after": 1, "epoch": EPOCH, "last": 9, "replayed": 8,
                               "truncated": False},
                "all": {"after": 0, "epoch": EPOCH, "last": 600, "replayed": 500,
                        "truncated": True, "next": 501},
                "user:u_1": {"after": 0, "epoch": EPOCH, "last": 5, "replayed": 1,
                             "truncated": True, "oldest": 5, "skipped": [3]},
                "user:u_2": {"after": 0, "epoch": EPOCH, "last": 2, "replayed": 2,
                             "truncated": False, "reset": True},
                "room:new": {"after": 0, "epoch": None, "last": 0, "replayed": 0,
                             "truncated": False},
                "room:x": {"after": 0, "refused": "join 'x' first"},
            },
        ),
        protocol.history_frame(2, "room:lobby", [logged], None, last=3, epoch=EPOCH),
        protocol.history_frame(None, "all", [], 7, last=9, skipped=[5], truncated=True, oldest=6,
                               epoch=EPOCH),
        protocol.history_frame(None, "room:lobby", [logged], None, last=3, epoch=EPOCH, prev=3),
        protocol.history_frame(None, "room:new", [], None, last=0, epoch=None, prev=None),
        {"type": "members", "room": "lobby", "count": 2, "truncated": False,
         "users": [{"userId": "u_1", "connections": 2}]},
        {"type": "members", "room": "lobby", "count": 3, "truncated": True, "next": "u_2",
         "users": [{"userId": "u_1", "connections": 1, "info": {"name": "Ann"}}]},
        presence,
        protocol.presence_frame("lobby", "leave", "u_1") | {"stream": "room:lobby", "seq": 5,
                                                            "epoch": EPOCH},
        protocol.history_frame(3, "room:lobby", [logged, presence], None, last=4, epoch=EPOCH),
        replay_frame("room:lobby", EPOCH, [logged, presence]),
        protocol.authorized_frame(9, 1795608000000),
        protocol.authorized_frame(None, None),
        *(protocol.removed_frame("private:x", reason) for reason in protocol.REMOVED_REASONS),
        protocol.error_frame("unavailable", "the room's authorizer could not answer", 1),
        protocol.error_frame("token_expired", "token expired", 2),
        protocol.error_frame("bad_token", "invalid token", 3),
        {"message": "Internal server error", "connectionId": "R1kmxc2VNjMCFIA=",
         "requestId": "VNRXVFJOywMF3-Q="},
    ]  # fmt: skip


@pytest.mark.parametrize("frame", _frames(), ids=lambda f: str(f.get("type", "gateway")))
def test_frames_the_server_builds_match_their_schema(frame: dict[str, Any]) -> None:
    assert problems(frame, server_schema(frame)) == []


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        ({"type": "pong", "extra": 1}, "Additional properties"),
        ({"type": "nonsense"}, "no schema"),
        ({"type": "message", "id": MID}, "required"),
        ({"type": "replay", "stream": "all", "epoch": EPOCH, "messages": []}, "non-empty"),
        ({"type": "error", "code": "oops", "message": "x"}, "is not one of"),
        ({"type": "ack", "delivered": 1, "failed": 0, "gone": 0}, "not valid under any"),
        # The online oracle (#22 item 9): a DM's ack never names the recipient stream's seq.
        ({"type": "ack", "stored": True, "id": MID, "seq": 2}, "not valid under any"),
        ({"type": "error", "code": "not_found", "message": "x", "seq": 2}, "Additional"),
        ({"message": "Internal server error"}, "required"),
        (["not", "an", "object"], "no schema"),
    ],
)
def test_a_frame_off_the_document_is_named_with_its_problem(frame: Any, words: str) -> None:
    checker = FrameChecker()
    checker(frame)
    [failure] = checker.failures
    assert words in failure and json.dumps(frame) in failure, failure


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "sendMessage", "targetUserId": "u_2", "text": "hi", "clientMsgId": "c-1"},
        {"action": "broadcastAll", "text": "hi", "ref": 3},
        {"action": "join", "room": "lobby"},
        {"action": "leave", "room": "lobby"},
        {"action": "sendRoom", "room": "lobby", "text": "hi", "clientMsgId": "c-2"},
        {"action": "ping"},
        {"action": "whoami", "ref": "w"},
        {"action": "resume", "streams": {"room:lobby": 41, "all": 0}},
        {"action": "resume", "streams": {"room:lobby": {"epoch": EPOCH, "seq": 41},
                                         "all": {"epoch": None, "seq": 0}}},
        {"action": "history", "stream": "user:u_1", "after": 3, "limit": 50},
        {"action": "history", "stream": "room:lobby", "latest": True, "limit": 20},
        {"action": "history", "stream": "room:lobby", "before": 40},
        {"action": "members", "room": "lobby"},
        {"action": "members", "room": "lobby", "cursor": "u_9"},
        {"action": "sendRoom", "room": "lobby", "event": "order.updated", "data": {"id": 1}},
        {"action": "sendRoom", "room": "lobby", "event": "typing", "data": True,
         "ephemeral": True},
        {"action": "broadcastAll", "data": [1, 2], "text": "both"},
        {"action": "sendMessage", "targetUserId": "u_2", "data": "x", "ephemeral": False,
         "clientMsgId": "c-3"},
        {"action": "authorize", "token": "eyJ.a.b", "ref": 1},
    ],
    ids=lambda f: str(f["action"]),
)  # fmt: skip
def test_client_frames_the_server_accepts_match_their_schema(frame: dict[str, Any]) -> None:
    if frame["action"] in protocol.ACTIONS:  # members is parsed where presence is built
        parsed = protocol.parse_frame(json.dumps(frame))
        assert not isinstance(parsed, protocol.ProtocolError), parsed
    assert problems(frame, CLIENT_FRAMES[frame["action"]]) == []


@pytest.mark.parametrize(
    ("frame", "schema"),
    [
        ({"action": "sendMessage", "targetUserId": "u#2", "text": "hi"}, "SendMessage"),
        ({"action": "sendRoom", "room": "r", "text": "", "clientMsgId": "c"}, "SendRoom"),
        ({"action": "broadcastAll", "text": "x", "clientMsgId": "has space"}, "BroadcastAll"),
        ({"action": "resume", "streams": {"lobby": 1}}, "Resume"),
        ({"action": "history", "stream": "all", "limit": 101}, "HistoryRequest"),
        ({"action": "history", "stream": "all", "latest": True, "before": 3}, "HistoryRequest"),
        ({"action": "history", "stream": "all", "after": 1, "before": 3}, "HistoryRequest"),
        ({"action": "sendRoom", "room": "r"}, "SendRoom"),
        ({"action": "sendRoom", "room": "r", "data": None}, "SendRoom"),
        ({"action": "sendRoom", "room": "r", "text": "t", "event": "a b"}, "SendRoom"),
        ({"action": "sendRoom", "room": "r", "text": "t", "ephemeral": True, "clientMsgId": "c"},
         "SendRoom"),
        ({"action": "resume", "streams": {"all": {"epoch": "e"}}}, "Resume"),
        ({"action": "resume", "streams": {"all": {"epoch": "a#b", "seq": 1}}}, "Resume"),
        ({"action": "authorize", "token": ""}, "Authorize"),
        ({"action": "authorize"}, "Authorize"),
    ],
)  # fmt: skip
def test_client_frames_the_server_refuses_do_not_match(frame: dict[str, Any], schema: str) -> None:
    assert problems(frame, schema)
