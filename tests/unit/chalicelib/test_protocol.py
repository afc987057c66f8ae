from __future__ import annotations

import json
import typing

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib import protocol
from chalicelib.protocol import (
    BroadcastAll,
    Join,
    Leave,
    Ping,
    ProtocolError,
    SendMessage,
    SendRoom,
    WhoAmI,
    parse_frame,
)


def test_parses_the_seed_send_message_frame_exactly() -> None:
    frame = '{"action":"sendMessage","targetUserId":"u_456","text":"hi"}'
    assert parse_frame(frame) == SendMessage("u_456", "hi")


def test_parses_broadcast_all() -> None:
    assert parse_frame('{"action":"broadcastAll","text":"all"}') == BroadcastAll("all")


@pytest.mark.parametrize(
    ("frame", "command"),
    [
        ({"action": "join", "room": "lobby"}, Join("lobby")),
        ({"action": "leave", "room": "lobby", "ref": 7}, Leave("lobby", 7)),
        ({"action": "sendRoom", "room": "lobby", "text": "yo"}, SendRoom("lobby", "yo")),
        ({"action": "ping", "ref": "r1"}, Ping("r1")),
        ({"action": "whoami"}, WhoAmI()),
    ],
)
def test_parses_every_action(frame: dict, command: protocol.Command) -> None:
    assert parse_frame(json.dumps(frame)) == command


def test_accepts_bytes_frames() -> None:
    assert parse_frame(b'{"action":"ping"}') == Ping()


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "bad_json"),
        (b"\xff\xfe", "bad_json"),
        (None, "bad_json"),
        ("[1,2]", "bad_json"),
        ('"text"', "bad_json"),
        ("{}", "bad_request"),
        ('{"action": 5}', "bad_request"),
        ('{"action":"dance"}', "unknown_action"),
        ('{"action":"sendMessage","text":"hi"}', "bad_request"),
        ('{"action":"sendMessage","targetUserId":"u#1","text":"hi"}', "bad_request"),
        ('{"action":"sendMessage","targetUserId":"u_1","text":5}', "bad_request"),
        ('{"action":"sendMessage","targetUserId":"u_1","text":""}', "bad_request"),
        ('{"action":"join","room":"ROOM#x"}', "bad_request"),
        ('{"action":"join","room":""}', "bad_request"),
        ('{"action":"join","room":"' + "r" * 65 + '"}', "bad_request"),
        ('{"action":"join","room":"caf\\u00e9"}', "bad_request"),
        ('{"action":"ping","ref":{"a":1}}', "bad_request"),
        ('{"action":"ping","ref":true}', "bad_request"),
        ("[" * 100000 + "]" * 100000, "bad_json"),
    ],
)
def test_bad_frames_become_error_codes(raw: object, code: str) -> None:
    result = parse_frame(raw)  # type: ignore[arg-type]
    assert isinstance(result, ProtocolError)
    assert result.code == code
    assert result.frame()["type"] == "error"


def test_overlong_text_is_too_large() -> None:
    result = parse_frame(
        json.dumps({"action": "broadcastAll", "text": "x" * 11}), max_text_chars=10
    )
    assert isinstance(result, ProtocolError) and result.code == "too_large"


def test_error_echoes_ref_when_it_was_valid() -> None:
    result = parse_frame('{"action":"nope","ref":"abc"}')
    assert isinstance(result, ProtocolError)
    assert result.frame() == {
        "type": "error",
        "code": "unknown_action",
        "message": result.message,
        "ref": "abc",
    }


def test_message_frame_has_the_documented_fields() -> None:
    frame = protocol.message_frame("u_1", "room", "hi", room="lobby", sent_at=5)
    assert set(frame) == {"type", "id", "from", "scope", "text", "sentAt", "room"}
    assert frame["sentAt"] == 5 and frame["scope"] == "room"


def test_encode_is_compact_utf8() -> None:
    assert protocol.encode({"text": "héllo"}) == '{"text":"héllo"}'.encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
frames = st.fixed_dictionaries(
    {"action": st.sampled_from(protocol.ACTIONS) | st.text(max_size=10)},
    optional={
        "text": json_values,
        "room": json_values,
        "targetUserId": json_values,
        "ref": json_values,
    },
)


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200),
        frames.map(json.dumps),
        json_values.map(json.dumps),
    )
)
def test_parser_returns_a_command_or_an_error_for_any_input(raw: object) -> None:
    result = parse_frame(raw)  # type: ignore[arg-type]
    if isinstance(result, ProtocolError):
        assert result.code in protocol.ERROR_CODES
        json.dumps(result.frame())
    else:
        # Every class of the Command union (new commands join it, and this test, by themselves).
        assert type(result) in typing.get_args(protocol.Command)
        assert {SendMessage, BroadcastAll, Join, Leave, SendRoom, Ping, WhoAmI} <= set(
            typing.get_args(protocol.Command)
        )


# --- resume and history (streams and seqs) -------------------------------------------------


def test_parses_resume_with_every_kind_of_stream() -> None:
    frame = {"action": "resume", "streams": {"room:lobby": 41, "user:u_123": 7, "all": 3}, "ref": 1}
    assert parse_frame(json.dumps(frame)) == protocol.Resume(
        (("room:lobby", 41), ("user:u_123", 7), ("all", 3)), 1
    )


def test_parses_history_with_defaults() -> None:
    assert parse_frame('{"action":"history","stream":"room:lobby"}') == protocol.History(
        "room:lobby", 0, protocol.HISTORY_DEFAULT_LIMIT
    )
    assert parse_frame(
        '{"action":"history","stream":"all","after":41,"limit":50,"ref":2}'
    ) == protocol.History("all", 41, 50, 2)


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "resume"},
        {"action": "resume", "streams": {}},
        {"action": "resume", "streams": []},
        {"action": "resume", "streams": {"lobby": 1}},
        {"action": "resume", "streams": {"room:a#b": 1}},
        {"action": "resume", "streams": {"user:": 1}},
        {"action": "resume", "streams": {"all": -1}},
        {"action": "resume", "streams": {"all": 1.5}},
        {"action": "resume", "streams": {"all": True}},
        {"action": "resume", "streams": {"all": "3"}},
        {"action": "resume", "streams": {"all": 2**60}},
        {"action": "resume", "streams": {f"room:r{i}": 0 for i in range(101)}},
        {"action": "history"},
        {"action": "history", "stream": "everyone"},
        {"action": "history", "stream": "all", "limit": 0},
        {"action": "history", "stream": "all", "limit": 101},
        {"action": "history", "stream": "all", "after": "x"},
    ],
)
def test_bad_resume_and_history_frames_are_bad_requests(frame: dict) -> None:
    result = parse_frame(json.dumps(frame))
    assert isinstance(result, ProtocolError) and result.code == "bad_request", result


def test_stream_names_round_trip() -> None:
    assert protocol.stream_name("room", "lobby") == "room:lobby"
    assert protocol.stream_name("user", "u_1") == "user:u_1"
    assert protocol.stream_name("all") == "all"
    for name in ("room:lobby", "user:u_1", "all"):
        scope, value = protocol.parse_stream(name)  # type: ignore[misc]
        assert protocol.stream_name(scope, value) == name


def test_sends_carry_an_optional_client_msg_id() -> None:
    cmid = "01J9Z3K6-msg_1.a:b"
    dm = json.dumps(
        {"action": "sendMessage", "targetUserId": "u", "text": "t", "clientMsgId": cmid}
    )
    assert parse_frame(dm) == SendMessage("u", "t", None, cmid)
    room = json.dumps({"action": "sendRoom", "room": "r", "text": "t", "clientMsgId": cmid})
    assert parse_frame(room) == SendRoom("r", "t", None, cmid)
    everyone = json.dumps({"action": "broadcastAll", "text": "t", "clientMsgId": "x", "ref": 3})
    assert parse_frame(everyone) == BroadcastAll("t", 3, "x")
    assert parse_frame('{"action":"broadcastAll","text":"t"}') == BroadcastAll("t")


@pytest.mark.parametrize("cmid", ["", "x" * 65, "a#b", "a b", "é", 7, True, ["x"], {"a": 1}])
def test_a_bad_client_msg_id_is_a_bad_request_that_echoes_the_ref(cmid: object) -> None:
    frame = {"action": "sendRoom", "room": "r", "text": "t", "clientMsgId": cmid, "ref": "q"}
    error = parse_frame(json.dumps(frame))
    assert isinstance(error, ProtocolError)
    assert (error.code, error.ref) == ("bad_request", "q") and "clientMsgId" in error.message
