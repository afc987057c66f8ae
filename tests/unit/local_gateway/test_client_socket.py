"""ClientSocket on in-memory streams: reassembly, UTF-8 checks, sending and close status."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

from local_gateway.client_socket import ClientSocket, Message
from local_gateway.lambda_events import ClientInfo


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.aborted = True


class FakeWriter:
    """Collects what the socket writes."""

    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.written = bytearray()
        self.eof = False
        self.closed = False

    def is_closing(self) -> bool:
        return self.closed

    def write(self, data: bytes) -> None:
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True


class Pair:
    """A ClientSocket after its handshake, and the client that talks to it."""

    def __init__(self) -> None:
        self.client = ClientProtocol(parse_uri("ws://127.0.0.1/api"))
        self.client.send_request(self.client.connect())
        proto = ServerProtocol()
        proto.receive_data(b"".join(self.client.data_to_send()))
        (request,) = [e for e in proto.events_received() if isinstance(e, Request)]
        self.reader = asyncio.StreamReader()
        self.writer = FakeWriter()
        info = ClientInfo(connection_id="c1", connected_at_ms=0, source_ip="::1", user_agent=None)
        writer: Any = self.writer
        self.socket = ClientSocket(info, proto, self.reader, writer, close_timeout=0.05)
        self.socket.accept(proto.accept(request))
        self.client.receive_data(self.take_written())
        self.client.events_received()  # the 101

    def take_written(self) -> bytes:
        data = bytes(self.writer.written)
        self.writer.written.clear()
        return data

    def feed(self, *frames: Frame) -> None:
        for frame in frames:
            self.client.send_frame(frame)
        self.reader.feed_data(b"".join(self.client.data_to_send()))

    def frames_from_server(self) -> Iterator[Frame]:
        self.client.receive_data(self.take_written())
        return (e for e in self.client.events_received() if isinstance(e, Frame))


async def collect(pair: Pair, *frames: Frame, eof: bool = True) -> list[Message]:
    pair.feed(*frames)
    if eof:
        pair.reader.feed_eof()
    return [m async for m in pair.socket.messages()]


def test_fragmented_messages_are_joined() -> None:
    async def scenario() -> list[Message]:
        pair = Pair()
        return await collect(
            pair,
            Frame(Opcode.TEXT, b"hel", fin=False),
            Frame(Opcode.CONT, b"lo", fin=False),
            Frame(Opcode.CONT, b"!"),
            Frame(Opcode.BINARY, b"\xff"),
        )

    assert asyncio.run(scenario()) == [Message(b"hello!", True), Message(b"\xff", False)]


def test_invalid_utf8_text_fails_the_connection_with_1007() -> None:
    async def scenario() -> tuple[list[Message], Pair]:
        pair = Pair()
        messages = await collect(pair, Frame(Opcode.TEXT, b"\xff"), Frame(Opcode.TEXT, b"late"))
        return messages, pair

    messages, pair = asyncio.run(scenario())
    assert messages == []  # and nothing after the failure either
    assert pair.socket.close_status() == (1007, "invalid UTF-8 in text frame")


def test_send_picks_text_or_binary_and_close_waits_for_the_client() -> None:
    async def scenario() -> tuple[list[Frame], Pair]:
        pair = Pair()
        assert pair.socket.send(b'{"a":1}')
        assert pair.socket.send(b"\xff\x00")
        pair.socket.close(1001, "Going away")
        assert not pair.socket.send(b"after close")
        frames = list(pair.frames_from_server())
        await asyncio.sleep(0.1)  # past close_timeout: the silent client is dropped
        return frames, pair

    frames, pair = asyncio.run(scenario())
    assert [(f.opcode, f.data) for f in frames[:2]] == [
        (Opcode.TEXT, b'{"a":1}'),
        (Opcode.BINARY, b"\xff\x00"),
    ]
    assert frames[2].opcode is Opcode.CLOSE
    assert pair.writer.transport.aborted
    assert pair.socket.close_status() == (1001, "Going away")


def test_a_message_over_the_frame_limit_is_sent_in_frames_of_at_most_that_size() -> None:
    # Quotas page: a message over 32 KB "must be split into multiple frames, each 32 KB or
    # smaller. This applies to @connections commands".
    async def scenario() -> list[Frame]:
        pair = Pair()
        pair.socket.max_frame_bytes = 4
        assert pair.socket.send("héllo wörld".encode())  # 13 bytes, multi-byte characters
        assert pair.socket.send(b"\xff\x00\xff\x00\xff")
        assert pair.socket.send(b"four")  # exactly the limit: one frame
        return list(pair.frames_from_server())

    frames = asyncio.run(scenario())
    assert [(f.opcode, f.fin, len(f.data)) for f in frames] == [
        (Opcode.TEXT, False, 4),
        (Opcode.CONT, False, 4),
        (Opcode.CONT, False, 4),
        (Opcode.CONT, True, 1),
        (Opcode.BINARY, False, 4),
        (Opcode.CONT, True, 1),
        (Opcode.TEXT, True, 4),
    ]
    assert b"".join(f.data for f in frames[:4]).decode() == "héllo wörld"


def test_close_status_is_the_clients_when_it_closed_first() -> None:
    async def scenario() -> Pair:
        pair = Pair()
        pair.client.send_close(4000, "bye")
        pair.reader.feed_data(b"".join(pair.client.data_to_send()))
        pair.reader.feed_eof()
        assert [m async for m in pair.socket.messages()] == []
        pair.socket.cancel_abort()  # what the server does once the read loop ends
        await asyncio.sleep(0.1)
        return pair

    pair = asyncio.run(scenario())
    assert pair.socket.close_status() == (4000, "bye")
    assert not pair.writer.transport.aborted


def test_close_status_without_a_close_frame_is_1006() -> None:
    async def scenario() -> Pair:
        pair = Pair()
        await collect(pair)
        return pair

    assert asyncio.run(scenario()).socket.close_status()[0] == 1006
