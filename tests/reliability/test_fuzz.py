"""Fuzzing: hypothesis-generated frames over a real socket.

Random JSON, wrong types in every field, deep nesting, huge and odd unicode strings, JSON
escapes of lone surrogates and non-JSON text, all from one authenticated (non-admin)
client. Every frame gets exactly one reply, an ``error`` frame with a known code or, when the
fuzzer happens to write a valid command, its normal answer; the connection stays up; the
bystanders (another user, in a room of their own) receive nothing; and the registry changes
exactly as far as the acks said (rooms the fuzzer joined), nothing else. A binary frame ends
the run: API Gateway closes the connection with 1003 (developer guide, "Binary media types for
WebSocket APIs"), so it is sent last, and the fuzzer's registry entries must go with it.
"""

from __future__ import annotations

import collections
import json
import secrets
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from chalicelib import protocol
from tests.helpers import JWT_ENV, token
from tests.reliability.conftest import Figures, StackFactory
from tests.reliability.scale import SCALE
from tests.wsclient import open_ws, send

pytestmark = pytest.mark.timeout(SCALE.timeout)
MAX_FRAME = 32 * 1024  # API Gateway closes a bigger frame with 1009: by design, not fuzzed
BINARY_CLOSE = 1003  # and any binary frame with 1003: sent once, at the end
# Every reply a frame can get (chalicelib/protocol.py); a fuzzed frame may well be a valid
# members, history or resume request.
REPLY_TYPES = {"error", "ack", "pong", "identity", "members", "history", "resumed"}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**53, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
odd_names = st.sampled_from(
    [
        "",
        " ",
        "a#b",
        "ROOM#lobby",
        "USER#u1",
        "CONN#x",
        "x" * 65,
        "u" * 129,
        "lobby\u200b",
        "ｌｏｂｂｙ",
        "lóbby",
        "lobby\n",
        "lobby\x00",
        "../lobby",
        "lobby%23x",
        "🙂",
    ]
)
valid_rooms = st.from_regex(protocol.ROOM_RE, fullmatch=True)
huge_text = st.builds(
    lambda ch, n: ch * n,
    st.characters(exclude_categories=["Cs"]),
    st.integers(min_value=1, max_value=12_000),
)
commands = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(protocol.ACTIONS) | st.text(max_size=40) | json_values,
        "text": st.text() | huge_text | json_values,
        "room": valid_rooms | odd_names | json_values,
        "targetUserId": st.just("fuzzer") | odd_names | st.text(max_size=20) | json_values,
        "ref": st.text(max_size=80) | st.integers() | json_values,
        "from": st.just("admin"),
        "connectionId": st.text(max_size=20),
        "role": st.just("admin"),
    },
).map(json.dumps)
# Mostly well-typed commands, so that valid ones (joins, sends) happen too.
near_valid = st.fixed_dictionaries(
    {"action": st.sampled_from(protocol.ACTIONS)},
    optional={
        "room": valid_rooms | odd_names,
        "text": st.text(min_size=1, max_size=50) | huge_text,
        "targetUserId": st.sampled_from(["fuzzer", "nobody", "u#1"]) | odd_names,
        "ref": st.text(max_size=70) | st.integers(min_value=-(2**60), max_value=2**60),
    },
).map(json.dumps)
deep_nesting = st.integers(min_value=50, max_value=15_000).map(
    lambda n: '{"action":"ping","x":' + "[" * n + "]" * n + "}"
)
surrogate_escapes = st.tuples(
    st.sampled_from(["ref", "text", "room", "targetUserId", "action"]),
    st.integers(min_value=0xD800, max_value=0xDFFF),
).map(lambda f: '{"action":"sendMessage","targetUserId":"fuzzer","text":"x","%s":"\\u%04x"}' % f)  # noqa: UP031
frames = st.one_of(
    commands,
    near_valid,
    near_valid,
    json_values.map(json.dumps),
    st.text(max_size=300),
    deep_nesting,
    surrogate_escapes,
)


def _recv_reply(ws: ClientConnection, seen: collections.Counter[str]) -> dict[str, Any]:
    """The next reply: message frames (a leak, or a fuzzed resume's replay) and presence
    events (replayed too) are counted and skipped."""
    for _ in range(100):
        raw = ws.recv(timeout=15)
        frame = json.loads(raw)
        if isinstance(frame, dict) and frame.get("type") in ("message", "presence", "replay"):
            seen[f"{frame['type']}_frames"] += 1
            continue
        assert isinstance(frame, dict), frame
        return frame
    raise AssertionError("no reply among 100 message frames")


def test_fuzzed_frames_get_error_frames_and_change_nothing(
    switchboard_factory: StackFactory, figures: Figures
) -> None:
    sb = switchboard_factory(auth_mode="jwt", env=JWT_ENV)
    tag = secrets.token_hex(4)
    room = f"lobby-{tag}"

    def open_as(user: str) -> ClientConnection:
        return open_ws(sb.gateway, f"token={token(user)}")

    tally: collections.Counter[str] = collections.Counter()
    fuzzer_rooms: set[str] = set()
    with (
        open_as("fuzzer") as ws,
        open_as(f"bystander-{tag}") as bystander,
        open_as(f"other-{tag}") as other,
    ):
        assert send(bystander, {"action": "join", "room": room}, timeout=10)["joined"] is True
        fuzzer_id = send(ws, {"action": "whoami"}, timeout=10)["connectionId"]
        before = sb.registry()

        @settings(
            max_examples=SCALE.fuzz_examples,
            deadline=None,
            derandomize=SCALE.name != "soak",
            suppress_health_check=list(HealthCheck),
        )
        @given(frame=frames)
        def fuzz(frame: str) -> None:
            size = len(frame.encode("utf-8"))
            if size > MAX_FRAME:
                tally["skipped_oversize"] += 1
                return
            ws.send(frame)
            reply = _recv_reply(ws, tally)
            kind = reply.get("type")
            assert kind in REPLY_TYPES, f"{frame[:200]!r} -> {reply}"
            if kind == "error":
                assert reply["code"] in protocol.ERROR_CODES, reply
                tally[f"error:{reply['code']}"] += 1
            else:
                tally[str(kind)] += 1
            if kind == "ack" and reply.get("joined"):
                fuzzer_rooms.add(str(reply["room"]))
            if kind == "ack" and reply.get("left"):
                fuzzer_rooms.discard(str(reply["room"]))
            tally["frames"] += 1

        fuzz()
        ws.send(json.dumps({"action": "ping", "ref": "still-up"}))
        assert _recv_reply(ws, tally) == {"type": "pong", "ref": "still-up"}
        after = sb.registry()
        for client in (bystander, other):
            with pytest.raises(TimeoutError):
                client.recv(timeout=0.3)  # nothing reached the bystanders
            assert send(client, {"action": "ping"}, timeout=10)["type"] == "pong"
        ws.send(b"\x00\xff binary")
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                _recv_reply(ws, tally)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == BINARY_CLOSE

    expected = before.memberships | {(r, fuzzer_id) for r in fuzzer_rooms}
    sb.wait_for_disconnects(timeout=30)
    leaked = sb.wait_for_registry(lambda r: r.items == 0, timeout=15).items
    figures.record(
        "fuzzing",
        clients=3,
        messages=tally["frames"],
        faults=f"{tally['frames']} hypothesis frames (JSON, wrong types, nesting, "
        "huge/odd unicode, lone surrogates; a last binary frame closes with 1003)",
        leaked=leaked,
        lost=0,
        replies={k: v for k, v in sorted(tally.items()) if k != "frames"},
        fuzzer_rooms=len(fuzzer_rooms),
        handler_errors=sb.handler_errors(),
    )
    assert tally["frames"] >= SCALE.fuzz_examples * 0.8
    assert tally["message_frames"] == 0
    assert set(after.connections) == set(before.connections)
    assert after.memberships == expected  # only the rooms the acks said were joined
    assert leaked == 0
    assert sb.handler_errors() == 0, sb.error_details()
