"""Requests off an asyncio stream, parsed by h11 (local_gateway/http11.py), without sockets."""

from __future__ import annotations

import asyncio

import pytest

from local_gateway.http11 import (
    HttpError,
    HttpRequest,
    build_response,
    read_body,
    read_request_head,
)

UPGRADE = (
    b"GET /api?userId=u_1 HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def stream(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=64 * 1024)
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


async def read_all(data: bytes) -> list[HttpRequest]:
    """Every request in ``data`` (a stream that then ends), bodies read."""
    reader = stream(data)
    requests = []
    while (request := await read_request_head(reader)) is not None:
        request.body = await read_body(reader, request)
        requests.append(request)
    return requests


def test_an_upgrade_head_is_parsed_and_the_bytes_after_it_stay_in_the_stream() -> None:
    async def scenario() -> tuple[HttpRequest | None, bytes]:
        reader = stream(UPGRADE + b"\x81\x85first-frame")
        request = await read_request_head(reader)
        return request, await reader.read()

    request, rest = asyncio.run(scenario())
    assert request is not None
    assert (request.method, request.path, request.query) == ("GET", "/api", "userId=u_1")
    assert request.is_websocket_upgrade and request.raw_head == UPGRADE
    assert request.header("sec-websocket-version") == "13"
    assert rest == b"\x81\x85first-frame"  # for the WebSocket, not eaten by the parser


def test_pipelined_requests_with_length_and_chunked_bodies() -> None:
    data = (
        b"POST /api/@connections/a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
        b"\r\n"  # a stray CRLF between requests is tolerated
        b"POST /api/@connections/b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\n"
        b"GET /api/@connections/c HTTP/1.0\r\nHost: h\r\n\r\n"
    )
    requests = asyncio.run(read_all(data))
    assert [(r.method, r.path, r.body) for r in requests] == [
        ("POST", "/api/@connections/a", b"hello"),
        ("POST", "/api/@connections/b", b"abcde"),
        ("GET", "/api/@connections/c", b""),
    ]
    assert [r.keep_alive for r in requests] == [True, True, False]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"NOT A REQUEST\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: h\r\nbad header\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 requires Host (h11)
        (b"GET / HTTP/1.1\r\nHost: h", 400),  # cut off
        (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\n\r\n", 413),
    ],
)
def test_bad_requests_are_clear_errors(data: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        asyncio.run(read_all(data))
    assert info.value.status == status


def test_a_clean_eof_between_requests_is_no_request() -> None:
    assert asyncio.run(read_all(b"")) == []
    assert asyncio.run(read_all(b"\r\n\r\n")) == []


def test_responses_are_written_as_before() -> None:
    assert build_response(204, [("x-amzn-RequestId", "r")], keep_alive=False).split(b"\r\n")[
        2:
    ] == [
        b"x-amzn-RequestId: r",
        b"Connection: close",
        b"",
        b"",
    ]
