"""HTTP/1.1 on asyncio streams: requests parsed by h11, responses written here.

The WebSocket endpoint and the management API share one port, as on API Gateway. The
websockets library only parses handshake (GET, bodyless) requests and closes the
connection after any plain HTTP answer, which would cost a TCP connection per
@connections POST. So requests are parsed here with h11 (request line, headers, body
framing: Content-Length or chunked), connections are kept alive, and upgrade requests go
on to websockets' sans-I/O protocol with the exact bytes of their head.

Bytes are taken off the stream up to the blank line for the head and exactly as framed for
the body, so nothing past a request is consumed: a WebSocket client's first frames, or a
pipelined request, stay in the stream for whoever reads next. A fresh
``h11.Connection(h11.SERVER)`` parses each request, since responses are written here (their
bytes unchanged from the hand-written parser this replaced) rather than through h11.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from dataclasses import dataclass, field
from http import HTTPStatus

import h11

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
    # The h11 parser that read the head; read_body continues with it.
    _parser: h11.Connection | None = field(default=None, repr=False)

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
    head = b""
    while not head:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None
            raise HttpError(400, "incomplete request") from exc
        except asyncio.LimitOverrunError as exc:
            raise HttpError(431, "request header fields too large") from exc
        # Stray CRLFs between pipelined requests (RFC 9112 2.2): skip, keep reading.
        head = head.lstrip(b"\r\n")
    parser = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
    parser.receive_data(head)
    try:
        event = parser.next_event()
    except h11.RemoteProtocolError as exc:
        raise HttpError(exc.error_status_hint, f"bad request: {exc}") from exc
    if not isinstance(event, h11.Request):  # a whole head always makes a Request
        raise HttpError(400, "bad request")
    return HttpRequest(
        method=event.method.decode("ascii").upper(),
        target=event.target.decode("iso-8859-1"),
        version="HTTP/" + event.http_version.decode("ascii"),
        headers=[
            (k.decode("iso-8859-1"), v.decode("iso-8859-1")) for k, v in event.headers.raw_items()
        ],
        raw_head=head,
        _parser=parser,
    )


async def read_body(
    reader: asyncio.StreamReader, request: HttpRequest, limit: int = MAX_BODY_BYTES
) -> bytes:
    """The request's body, framed as h11 says (Content-Length or chunked)."""
    parser = request._parser
    if parser is None:
        raise HttpError(400, "request was not read by read_request_head")
    length_text = request.header("content-length")
    if length_text is not None and int(length_text) > limit:  # h11 validated the number
        raise HttpError(413, "request body too large")
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpError(exc.error_status_hint, f"bad request body: {exc}") from exc
        if isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        if isinstance(event, h11.Data):
            total += len(event.data)
            if total > limit:
                raise HttpError(413, "request body too large")
            chunks.append(bytes(event.data))
            continue
        if event is h11.NEED_DATA:
            if length_text is not None and "chunked" not in (
                request.header("transfer-encoding") or ""
            ):
                data = await reader.readexactly(int(length_text) - total)
            else:
                # Chunked: a line at a time never reads past the final CRLF.
                data = await reader.readuntil(b"\n")
            parser.receive_data(data)
            continue
        raise HttpError(400, "incomplete request body")


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
