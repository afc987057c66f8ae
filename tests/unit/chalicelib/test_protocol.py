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
    assert set(frame) == {"type", "id", "from", "scope", "event", "text", "sentAt", "room"}
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
        (
            protocol.Cursor("room:lobby", 41),
            protocol.Cursor("user:u_123", 7),
            protocol.Cursor("all", 3),
        ),
        1,
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


# --- events: structured, ephemeral sends (issue #24) ---------------------------------------


def test_a_send_takes_an_event_and_any_json_data_beside_or_instead_of_text() -> None:
    frame = {"action": "sendRoom", "room": "r", "event": "order.updated", "data": {"id": 7}}
    assert parse_frame(json.dumps(frame)) == SendRoom(
        "r", None, event="order.updated", data={"id": 7}
    )
    both = {"action": "sendMessage", "targetUserId": "u", "text": "hi", "data": [1, "two", None]}
    assert parse_frame(json.dumps(both)) == SendMessage("u", "hi", data=[1, "two", None])
    scalar = {"action": "broadcastAll", "data": 0, "event": "chat/typing"}
    assert parse_frame(json.dumps(scalar)) == BroadcastAll(None, event="chat/typing", data=0)


def test_the_event_defaults_to_message() -> None:
    command = parse_frame('{"action":"sendRoom","room":"r","text":"t"}')
    assert isinstance(command, SendRoom)
    assert command.body == protocol.Body("t", "message", None, False)


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"action": "sendRoom", "room": "r"}, "bad_request"),  # neither text nor data
        ({"action": "sendRoom", "room": "r", "data": None}, "bad_request"),  # null is no data
        ({"action": "sendRoom", "room": "r", "text": "t", "event": ""}, "bad_request"),
        ({"action": "sendRoom", "room": "r", "text": "t", "event": "e" * 65}, "bad_request"),
        ({"action": "sendRoom", "room": "r", "text": "t", "event": "a b"}, "bad_request"),
        ({"action": "sendRoom", "room": "r", "text": "t", "event": "caf\u00e9"}, "bad_request"),
        ({"action": "sendRoom", "room": "r", "text": "t", "event": 5}, "bad_request"),
        ({"action": "sendRoom", "room": "r", "text": "t", "ephemeral": "yes"}, "bad_request"),
        ({"action": "sendRoom", "room": "r", "text": 5, "data": 1}, "bad_request"),
        ({"action": "sendRoom", "room": "r", "data": "\ud800"}, "bad_request"),
        ({"action": "sendRoom", "room": "r", "data": {"\udc00": 1}}, "bad_request"),
        ({"action": "sendRoom", "room": "r", "data": "x" * protocol.MAX_BODY_BYTES}, "too_large"),
    ],
)
def test_bad_structured_sends_are_refused(frame: dict, code: str) -> None:
    result = parse_frame(json.dumps(frame))
    assert isinstance(result, ProtocolError) and result.code == code, result


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "[1, NaN]", '{"a": Infinity}'])
def test_data_refuses_numbers_json_cannot_carry(raw: str) -> None:
    # Python's json reads these; a JSON client could not parse them back.
    result = parse_frame('{"action":"sendRoom","room":"r","data":' + raw + "}")
    assert isinstance(result, ProtocolError) and result.code == "bad_request"


def test_data_nests_at_most_max_data_depth_levels() -> None:
    def nested(depth: int) -> str:
        return "[" * depth + "]" * depth

    ok = parse_frame('{"action":"sendRoom","room":"r","data":' + nested(32) + "}")
    assert isinstance(ok, SendRoom)
    deep = parse_frame('{"action":"sendRoom","room":"r","data":' + nested(33) + "}")
    assert isinstance(deep, ProtocolError) and "deeper" in deep.message


def test_text_and_data_together_must_fit_the_frame_limit() -> None:
    half = protocol.MAX_BODY_BYTES // 2
    fits = {"action": "sendRoom", "room": "r", "text": "t" * 10, "data": "d" * (half - 100)}
    assert isinstance(parse_frame(json.dumps(fits), max_text_chars=half), SendRoom)
    over = {"action": "sendRoom", "room": "r", "text": "t" * half, "data": "d" * half}
    result = parse_frame(json.dumps(over), max_text_chars=half)
    assert isinstance(result, ProtocolError) and result.code == "too_large"
    # Text alone keeps its MAX_TEXT_CHARS limit, data or not.
    long_text = {"action": "sendRoom", "room": "r", "text": "t" * 11, "data": 1}
    result = parse_frame(json.dumps(long_text), max_text_chars=10)
    assert isinstance(result, ProtocolError) and result.code == "too_large"


def test_the_body_limit_leaves_room_for_every_frame_that_carries_it() -> None:
    # The largest body a parser accepts, in a message frame with the longest names, inside a
    # history page: one post (128 KB) still carries it.
    data = "d" * (protocol.MAX_BODY_BYTES - 2)
    assert protocol.body_bytes(None, data) == protocol.MAX_BODY_BYTES
    message = protocol.message_frame("u" * 128, protocol.Scope.ROOM, None, "r" * 64, data=data)
    message.update(stream="room:" + "r" * 64, seq=2**53, epoch="e" * 64, event="e" * 64)
    page = protocol.history_frame(
        "x" * 64, message["stream"], [message], 2**53, last=2**53, epoch="e" * 64, prev=2**53
    )
    assert len(protocol.encode(page)) <= protocol.MAX_PAYLOAD_BYTES


def test_ephemeral_sends_parse_and_refuse_a_client_msg_id() -> None:
    frame = {"action": "sendRoom", "room": "r", "data": {"x": 1}, "ephemeral": True, "ref": 4}
    assert parse_frame(json.dumps(frame)) == SendRoom("r", None, 4, data={"x": 1}, ephemeral=True)
    with_id = {**frame, "clientMsgId": "m-1"}
    error = parse_frame(json.dumps(with_id))
    assert isinstance(error, ProtocolError)
    assert (error.code, error.ref) == ("bad_request", 4) and "clientMsgId" in error.message
    # ``false`` is an ordinary (logged) send, which may carry one.
    logged = {**with_id, "ephemeral": False}
    assert parse_frame(json.dumps(logged)) == SendRoom("r", None, 4, "m-1", data={"x": 1})


def test_parse_body_serves_the_http_push_routes() -> None:
    body = protocol.parse_body({"text": "hi", "event": "note", "data": {"a": 1}}, 100)
    assert body == protocol.Body("hi", "note", {"a": 1})
    with pytest.raises(ValueError, match="ephemeral") as info:
        protocol.parse_body({"text": "hi", "ephemeral": True}, 100, ephemeral_ok=False)
    assert info.value.args[1] == "bad_request"
    with pytest.raises(ValueError) as info:
        protocol.parse_body({"text": "x" * 101}, 100)
    assert info.value.args[1] == "too_large"


def test_message_frames_carry_event_and_data_unchanged() -> None:
    data = {"nested": [1, 2.5, None, True, "é"], "n": 2**60}
    frame = protocol.message_frame(
        "u_1", protocol.Scope.USER, None, event="order.updated", data=data
    )
    assert (frame["event"], frame["data"], "text" in frame) == ("order.updated", data, False)
    assert json.loads(protocol.encode(frame))["data"] == data
    plain = protocol.message_frame("u_1", protocol.Scope.ALL, "hi")
    assert (plain["event"], plain["text"], "data" in plain, "ephemeral" in plain) == (
        "message", "hi", False, False,
    )  # fmt: skip
    fleeting = protocol.message_frame("u_1", protocol.Scope.ALL, "t", ephemeral=True)
    assert fleeting["ephemeral"] is True


def test_the_digest_source_is_the_text_for_plain_messages_and_canonical_json_otherwise() -> None:
    assert protocol.Body("hi").digest_source() == "hi"
    a = protocol.Body("hi", data={"b": 1, "a": 2}).digest_source()
    b = protocol.Body("hi", data={"a": 2, "b": 1}).digest_source()
    assert a == b != "hi"
    assert protocol.Body("hi", "other").digest_source() != "hi"


# --- epochs, resume cursors, recent history, members pages ---------------------------------


def test_resume_takes_an_epoch_and_seq_besides_a_bare_number() -> None:
    frame = {
        "action": "resume",
        "streams": {
            "room:lobby": {"epoch": "01HZX3-a", "seq": 41},
            "all": 3,
            "user:u_1": {"epoch": None, "seq": 0},
        },
    }
    assert parse_frame(json.dumps(frame)) == protocol.Resume(
        (
            protocol.Cursor("room:lobby", 41, "01HZX3-a"),
            protocol.Cursor("all", 3),
            protocol.Cursor("user:u_1", 0),
        )
    )


@pytest.mark.parametrize(
    "cursor",
    [
        {"seq": -1},
        {"epoch": "e"},
        {"epoch": "e", "seq": "3"},
        {"epoch": 5, "seq": 3},
        {"epoch": "", "seq": 3},
        {"epoch": "a#b", "seq": 3},
        {"epoch": "e" * 65, "seq": 3},
        {"epoch": "e", "seq": 3, "extra": 1},
        [3],
    ],
)
def test_bad_resume_cursors_are_bad_requests(cursor: object) -> None:
    result = parse_frame(json.dumps({"action": "resume", "streams": {"all": cursor}}))
    assert isinstance(result, ProtocolError) and result.code == "bad_request", result


def test_history_takes_latest_or_before_and_keeps_after_as_the_default() -> None:
    latest = parse_frame('{"action":"history","stream":"all","latest":true}')
    assert latest == protocol.History("all", 0, 50, latest=True)
    assert isinstance(latest, protocol.History) and latest.backwards
    before = parse_frame('{"action":"history","stream":"all","before":40,"limit":10}')
    assert before == protocol.History("all", 0, 10, before=40)
    forward = parse_frame('{"action":"history","stream":"all","after":3}')
    assert isinstance(forward, protocol.History) and not forward.backwards


@pytest.mark.parametrize(
    "extra",
    [
        {"latest": True, "before": 4},
        {"latest": True, "after": 4},
        {"before": 4, "after": 1},
        {"latest": 1},
        {"before": -1},
        {"before": "4"},
    ],
)
def test_history_takes_one_direction(extra: dict) -> None:
    result = parse_frame(json.dumps({"action": "history", "stream": "all", **extra}))
    assert isinstance(result, ProtocolError) and result.code == "bad_request", result


def test_members_takes_a_cursor() -> None:
    assert parse_frame('{"action":"members","room":"r","cursor":"u_9"}') == protocol.Members(
        "r", None, "u_9"
    )
    bad = parse_frame('{"action":"members","room":"r","cursor":"a#b"}')
    assert isinstance(bad, ProtocolError) and bad.code == "bad_request"


def test_presence_enter_carries_info_when_the_user_has_some() -> None:
    assert "info" not in protocol.presence_frame("r", "leave", "u")
    assert protocol.presence_frame("r", "enter", "u", {"name": "Ann"})["info"] == {"name": "Ann"}


structured = st.fixed_dictionaries(
    {"action": st.sampled_from(["sendMessage", "sendRoom", "broadcastAll"])},
    optional={
        "text": json_values,
        "data": json_values,
        "event": json_values,
        "ephemeral": json_values,
        "clientMsgId": json_values,
        "room": st.just("r"),
        "targetUserId": st.just("u"),
    },
)


@settings(max_examples=300, deadline=None)
@given(structured)
def test_any_structured_send_is_a_command_that_encodes_or_an_error(frame: dict) -> None:
    result = parse_frame(json.dumps(frame))
    if isinstance(result, ProtocolError):
        assert result.code in protocol.ERROR_CODES
        return
    assert isinstance(result, (SendMessage, SendRoom, BroadcastAll))
    assert result.text is not None or result.data is not None
    assert not (result.ephemeral and result.client_msg_id is not None)
    message = protocol.message_frame("u", protocol.Scope.ALL, result.text, data=result.data)
    assert json.loads(protocol.encode(message)).get("data") == result.data


def test_authorize_carries_the_fresh_token() -> None:
    parsed = protocol.parse_frame('{"action": "authorize", "token": "a.b.c", "ref": 1}')
    assert parsed == protocol.Authorize("a.b.c", 1)


@pytest.mark.parametrize(
    "frame",
    [
        {"action": "authorize"},
        {"action": "authorize", "token": ""},
        {"action": "authorize", "token": 5},
        {"action": "authorize", "token": "x" * (protocol.MAX_TOKEN_CHARS + 1)},
    ],
)
def test_authorize_without_a_usable_token_is_a_bad_request(frame: dict[str, object]) -> None:
    parsed = protocol.parse_frame(json.dumps(frame))
    assert isinstance(parsed, protocol.ProtocolError) and parsed.code == "bad_request"
    assert "'token'" in parsed.message


def test_removed_and_authorized_frames() -> None:
    assert protocol.removed_frame("private:x", "revoked") == {
        "type": "removed",
        "room": "private:x",
        "reason": "revoked",
    }
    assert protocol.authorized_frame(1, 5000) == {"type": "authorized", "expiresAt": 5000, "ref": 1}
