"""One client's WebSocket on the gateway: the socket's own behaviour, no gateway policy.

Like the connection object of python-websockets, a ``ClientSocket`` owns its sans-I/O
``ServerProtocol`` and its stream: it reads and reassembles messages, sends, closes (with
a deadline for the client's half of the close handshake) and reports the close status
that ``$disconnect`` carries. What to do with a message, and when to close, is the
server's business (``local_gateway/server.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.server import ServerProtocol

from local_gateway.lambda_events import ABNORMAL_REASON, NO_STATUS_REASON, ClientInfo, now_ms

READ_CHUNK = 65536


@dataclass(frozen=True)
class Message:
    """One complete data message from the client (fragments already joined)."""

    payload: bytes
    is_text: bool


class ClientSocket:
    """One open WebSocket and its bookkeeping (touched only on the event loop)."""

    def __init__(
        self,
        info: ClientInfo,
        proto: ServerProtocol,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        close_timeout: float,
        *,
        max_frame_bytes: int | None = None,
    ) -> None:
        self.info = info
        self.proto = proto
        self.reader = reader
        self.writer = writer
        self.close_timeout = close_timeout
        self.max_frame_bytes = max_frame_bytes
        self.opened_mono = time.monotonic()
        self.last_active_mono = self.opened_mono
        self.last_active_ms = info.connected_at_ms
        self._fragments: list[bytes] | None = None
        self._fragments_text = False
        self._eof_sent = False
        self._abort_handle: asyncio.TimerHandle | None = None

    @property
    def id(self) -> str:
        return self.info.connection_id

    @property
    def is_open(self) -> bool:
        return self.proto.state is State.OPEN

    def touch(self) -> None:
        self.last_active_mono = time.monotonic()
        self.last_active_ms = now_ms()

    def buffered_bytes(self) -> int:
        """Bytes written to the socket that the client has not read yet."""
        return self.writer.transport.get_write_buffer_size()

    # -- sending -------------------------------------------------------------------------

    def accept(self, response: Response) -> None:
        """Complete the opening handshake with ``response`` (a 101)."""
        self.proto.send_response(response)
        self.flush()

    def send(self, payload: bytes) -> bool:
        """Send one message: text if the payload is UTF-8, else binary.

        A message over ``max_frame_bytes`` goes out as a fragmented message whose frames
        are at most that size: "a message larger than 32 KB must be split into multiple
        frames, each 32 KB or smaller. This applies to @connections commands" (footnote to
        "Quotas for configuring and running a WebSocket API in API Gateway"). Clients
        reassemble fragments, so a client that chokes on 32 KB+ frames fails here as on AWS.
        """
        if not self.is_open:
            return False
        try:
            payload.decode("utf-8")
            is_text = True
        except UnicodeDecodeError:
            is_text = False
        size = self.max_frame_bytes or len(payload) or 1
        chunks = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
        for index, chunk in enumerate(chunks):
            fin = index == len(chunks) - 1
            if index:
                self.proto.send_continuation(chunk, fin=fin)
            elif is_text:
                # Fragments may split a UTF-8 sequence: only the whole message must decode.
                self.proto.send_text(chunk, fin=fin)
            else:
                self.proto.send_binary(chunk, fin=fin)
        self.touch()
        self.flush()
        return True

    def close(self, code: int, reason: str) -> None:
        """Start the closing handshake; the socket is dropped if the client does not answer."""
        if self.is_open:
            self.proto.send_close(code, reason)
            self.flush()
            self._schedule_abort()

    def flush(self) -> None:
        """Write whatever the protocol has queued; an empty chunk means half-close."""
        writer = self.writer
        for chunk in self.proto.data_to_send():
            if writer.is_closing() or self._eof_sent:
                continue
            if chunk:
                writer.write(chunk)
            else:
                self._eof_sent = True
                try:
                    if writer.can_write_eof():
                        writer.write_eof()
                    else:
                        writer.close()
                except (OSError, RuntimeError):
                    writer.close()

    def _schedule_abort(self) -> None:
        # The client must answer our close frame (or close TCP) in time; else drop it,
        # which ends the read loop (and so runs $disconnect).
        if self._abort_handle is None:
            loop = asyncio.get_running_loop()
            self._abort_handle = loop.call_later(self.close_timeout, self.writer.transport.abort)

    def cancel_abort(self) -> None:
        """Forget the pending abort; call once the read loop has ended."""
        if self._abort_handle is not None:
            self._abort_handle.cancel()

    # -- receiving -----------------------------------------------------------------------

    async def messages(self) -> AsyncIterator[Message]:
        """Yield each data message until the socket is closed or dropped.

        Control frames are answered by the protocol; text messages that are not UTF-8
        fail the connection with 1007, as RFC 6455 section 8.1 requires.
        """
        proto = self.proto
        while True:
            try:
                data = await self.reader.read(READ_CHUNK)
            except (ConnectionError, OSError):
                data = b""
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()
            self.flush()
            for event in proto.events_received():
                if isinstance(event, Frame):
                    message = self._reassemble(event)
                    if message is not None and self._is_deliverable(message):
                        yield message
            if not data or proto.state is State.CLOSED:
                return
            if proto.close_expected():
                self._schedule_abort()

    def _reassemble(self, frame: Frame) -> Message | None:
        self.touch()  # any frame, control frames included, counts as activity
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                return Message(bytes(frame.data), opcode is Opcode.TEXT)
            self._fragments = [bytes(frame.data)]
            self._fragments_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT and self._fragments is not None:
            self._fragments.append(bytes(frame.data))
            if frame.fin:
                payload, self._fragments = b"".join(self._fragments), None
                return Message(payload, self._fragments_text)
        return None

    def _is_deliverable(self, message: Message) -> bool:
        if not self.is_open:
            return False
        if message.is_text:
            try:
                message.payload.decode("utf-8")
            except UnicodeDecodeError:
                self.proto.fail(1007, "invalid UTF-8 in text frame")
                self.flush()
                return False
        return True

    def close_status(self) -> tuple[int, str]:
        """disconnectStatusCode/Reason: the code of whoever closed first."""
        proto = self.proto
        received, sent = proto.close_rcvd, proto.close_sent
        if received is not None and (sent is None or proto.close_rcvd_then_sent):
            if received.code == 1005:
                return 1005, NO_STATUS_REASON
            return received.code, received.reason
        if sent is not None:
            return sent.code, sent.reason
        return 1006, ABNORMAL_REASON
