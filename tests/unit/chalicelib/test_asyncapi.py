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
    "members",
    "presence",
)
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
    logged = {**message, "stream": "room:lobby", "seq": 3}
    dm = {**protocol.message_frame("u_1", protocol.Scope.USER, "hi"), "stream": "user:u_2"}
    # A presence event as logged (the log adds stream and seq, nothing else).
    presence = {
        **protocol.presence_frame("lobby", "enter", "u_1"),
        "stream": "room:lobby",
        "seq": 4,
    }
    return [
        logged,
        {**logged, "replayed": True},
        {**dm, "seq": 1},
        protocol.ack_frame(1, 2, 0, 1, id=MID, stream="room:lobby", seq=3),
        AlreadySent(MID, "all", 9).frame("r"),
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
        Message.new("u_1", protocol.Scope.ROOM, "hi", "lobby").logged("room:lobby", 3).to_frame(),
        Message.new("u_1", protocol.Scope.ALL, "hi").logged("all", 1).to_frame(),
        protocol.pong_frame(),
        protocol.identity_frame("R1kmxc2VNjMCFIA=", "u_1", ["b", "a"], 7, "admin"),
        protocol.resumed_frame(
            1,
            {
                "room:lobby": {"after": 1, "last": 9, "replayed": 8, "truncated": False},
                "all": {"after": 0, "last": 600, "replayed": 500, "truncated": True, "next": 501},
                "user:u_1": {"after": 0, "last": 5, "replayed": 1, "truncated": True,
                             "oldest": 5, "skipped": [3]},
                "room:x": {"after": 0, "refused": "join 'x' first"},
            },
        ),
        protocol.history_frame(2, "room:lobby", [logged], None, last=3),
        protocol.history_frame(None, "all", [], 7, last=9, skipped=[5], truncated=True, oldest=6),
        {"type": "members", "room": "lobby", "count": 2, "truncated": False,
         "users": [{"userId": "u_1", "connections": 2}]},
        presence,
        {**presence, "replayed": True},
        protocol.history_frame(3, "room:lobby", [logged, presence], None, last=4),
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
        {"action": "history", "stream": "user:u_1", "after": 3, "limit": 50},
        {"action": "members", "room": "lobby"},
    ],
    ids=lambda f: str(f["action"]),
)
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
    ],
)
def test_client_frames_the_server_refuses_do_not_match(frame: dict[str, Any], schema: str) -> None:
    assert problems(frame, schema)
