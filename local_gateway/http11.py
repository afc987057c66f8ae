"""A small HTTP/1.1 reader/writer on asyncio streams.

The WebSocket endpoint and the management API share one port, as on API Gateway. The
websockets library only parses handshake (GET, bodyless) requests and closes the
connection after any plain HTTP answer, which would cost a TCP connection per
@connections POST. So this module parses requests itself, keeps connections alive, and
hands upgrade requests to websockets' sans-I/O protocol.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass, field
from http import HTTPStatus

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 8 * 1024 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class HttpRequest:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw_head: bytes = b""
    _lower: dict[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name, value in self.headers:
            key = name.lower()
            # Repeated headers are combined as HTTP allows for list-valued ones.
            self._lower[key] = self._lower[key] + ", " + value if key in self._lower else value

    def header(self, name: str, default: str | None = None) -> str | None:
        return self._lower.get(name.lower(), default)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    @property
    def keep_alive(self) -> bool:
        connection = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection

    @property
    def is_websocket_upgrade(self) -> bool:
        return "websocket" in (self.header("upgrade") or "").lower()


async def read_request_head(reader: asyncio.StreamReader) -> HttpRequest | None:
    """Read the request line and headers; None on a clean EOF between requests."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise HttpError(400, "incomplete request") from exc
    except asyncio.LimitOverrunError as exc:
        raise HttpError(431, "request header fields too large") from exc
    lines = head[:-4].decode("iso-8859-1").split("\r\n")
    # Tolerate stray CRLFs between pipelined requests (RFC 9112 2.2).
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return None
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad header line")
        headers.append((name, value.strip()))
    return HttpRequest(
        method=parts[0].upper(), target=parts[1], version=parts[2], headers=headers, raw_head=head
    )


async def read_body(
    reader: asyncio.StreamReader, request: HttpRequest, limit: int = MAX_BODY_BYTES
) -> bytes:
    if "chunked" in (request.header("transfer-encoding") or "").lower():
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise HttpError(400, "bad chunk size") from exc
            if size == 0:
                # Skip trailers up to the blank line.
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass
                return b"".join(chunks)
            total += size
            if total > limit:
                raise HttpError(413, "request body too large")
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    length_text = request.header("content-length")
    if not length_text:
        return b""
    try:
        length = int(length_text)
    except ValueError as exc:
        raise HttpError(400, "bad content-length") from exc
    if length < 0:
        raise HttpError(400, "bad content-length")
    if length > limit:
        raise HttpError(413, "request body too large")
    return await reader.readexactly(length) if length else b""


_date_cache: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    # Formatting a date per response is measurable at thousands of requests/s.
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode("ascii"))
    return _date_cache[1]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def build_response(
    status: int, headers: list[tuple[str, str]], body: bytes = b"", keep_alive: bool = True
) -> bytes:
    lines = [
        b"HTTP/1.1 %d %s" % (status, _reason(status).encode("ascii")),
        b"Date: " + _http_date(),
    ]
    for name, value in headers:
        lines.append((f"{name}: {value}").encode("latin-1"))
    # 204 and 304 carry no body and no Content-Length (RFC 9110 8.6).
    if status not in (204, 304):
        lines.append(b"Content-Length: %d" % len(body))
    if not keep_alive:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
