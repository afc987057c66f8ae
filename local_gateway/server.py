"""The WebSocket API and the @connections management API, on one asyncio port.

* ``GET /{stage}`` with ``Upgrade: websocket``: runs ``$connect`` *before* answering the
  handshake (a non-2xx status refuses it), then every data message becomes a ``$default``
  invocation and every close a ``$disconnect`` invocation.
* ``POST|GET|DELETE /{stage}/@connections/{id}``: the management API, with the error
  types and ``x-amzn-ErrorType`` header that botocore turns into ``client.exceptions.*``.

Everything socket-related runs on one event loop; only handler invocations go to the
thread pool, so thousands of concurrent @connections POSTs cost no thread each.
WebSocket framing uses the sans-I/O protocol of the websockets library, which also
enforces the message (128 KB) and frame (32 KB) limits with close code 1009.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from local_gateway.faults import ERROR, THROTTLE, FaultInjector
from local_gateway.http11 import (
    HttpError,
    HttpRequest,
    build_response,
    read_body,
    read_request_head,
)
from local_gateway.lambda_events import (
    ABNORMAL_REASON,
    NO_STATUS_REASON,
    ClientInfo,
    EventContext,
    connect_event,
    disconnect_event,
    iso8601,
    message_event,
    new_aws_id,
    now_ms,
)
from local_gateway.project import Invocation, LambdaRuntime

log = logging.getLogger("local_gateway")


@dataclass
class Limits:
    """API Gateway's WebSocket quotas; all configurable for tests."""

    max_message_bytes: int = 128 * 1024
    max_frame_bytes: int = 32 * 1024
    max_post_bytes: int = 131072  # botocore's PostToConnection Data max
    idle_timeout: float = 600.0
    max_duration: float = 7200.0
    integration_timeout: float = 29.0
    # Bytes queued for a client that is not reading; past this POST answers 429.
    send_buffer_limit: int = 1024 * 1024
    # How long to wait for the client's half of a close handshake before dropping it.
    close_timeout: float = 3.0


class ClientSocket:
    """One open WebSocket and its bookkeeping (touched only on the event loop)."""

    def __init__(
        self, info: ClientInfo, proto: ServerProtocol, writer: asyncio.StreamWriter
    ) -> None:
        self.info = info
        self.proto = proto
        self.writer = writer
        self.opened_mono = time.monotonic()
        self.last_active_mono = self.opened_mono
        self.last_active_ms = info.connected_at_ms
        self.fragments: list[bytes] | None = None
        self.fragments_text = False
        self.eof_sent = False
        self.abort_handle: asyncio.TimerHandle | None = None

    @property
    def id(self) -> str:
        return self.info.connection_id

    @property
    def is_open(self) -> bool:
        return self.proto.state is State.OPEN

    def touch(self) -> None:
        self.last_active_mono = time.monotonic()
        self.last_active_ms = now_ms()


def _json(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def _error(
    status: int, error_type: str, message: str, request_id: str
) -> tuple[int, list[tuple[str, str]], bytes]:
    return (
        status,
        [
            ("Content-Type", "application/json"),
            ("x-amzn-RequestId", request_id),
            ("x-amzn-ErrorType", error_type),
        ],
        _json({"message": message}),
    )


class WebSocketServer:
    """Serves one stage of a WebSocket API plus its management API."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        stage: str,
        api_id: str,
        executor: Executor,
        limits: Limits | None = None,
        faults: FaultInjector | None = None,
        runtime: LambdaRuntime | None = None,
        connection_id_factory: Callable[[], str] = new_aws_id,
        on_invocation: Callable[[Invocation], None] | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.stage = stage
        self.api_id = api_id
        self.executor = executor
        self.limits = limits or Limits()
        self.faults = faults or FaultInjector()
        self.runtime = runtime  # set once the app is imported (it needs our port first)
        self.connection_id_factory = connection_id_factory
        self.on_invocation = on_invocation
        self.connections: dict[str, ClientSocket] = {}
        self.stats: dict[str, int] = {
            "connects": 0,
            "refused": 0,
            "disconnects": 0,
            "messages_in": 0,
            "posts": 0,
            "posts_ok": 0,
            "gone": 0,
            "throttled": 0,
            "injected_errors": 0,
            "too_large": 0,
            "forbidden": 0,
            "gets": 0,
            "deletes": 0,
        }
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()  # every client connection
        self._background: set[asyncio.Future[Any]] = set()  # invocations in flight
        self._stopping = False
        self.port = port
        self.context = EventContext(domain_name=f"{host}:{port}", stage=stage, api_id=api_id)

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        # A large backlog: benchmarks open a thousand+ management connections at once.
        self._server = await asyncio.start_server(
            self._handle_client,
            self.host,
            self.requested_port,
            backlog=4096,
            limit=64 * 1024,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.context = EventContext(
            domain_name=f"{self.host}:{self.port}", stage=self.stage, api_id=self.api_id
        )

    async def stop(self) -> None:
        """Stop accepting, close every socket with 1001 (running $disconnect), drain."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            self.close_connection(conn, 1001, "Going away")
        ws_tasks = [t for t in self._tasks if getattr(t, "is_websocket", False)]
        if ws_tasks:
            await asyncio.wait(ws_tasks, timeout=self.limits.close_timeout + 1)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        if self._background:
            # $disconnect handlers are best effort, but give them a moment to finish.
            await asyncio.wait(list(self._background), timeout=5)

    # -- connection dispatch -----------------------------------------------------------

    async def _handle_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while not self._stopping:
                try:
                    request = await read_request_head(reader)
                except HttpError as exc:
                    writer.write(build_response(exc.status, [], b"", keep_alive=False))
                    return
                if request is None:
                    return
                if request.is_websocket_upgrade or (
                    request.method == "GET" and request.path.rstrip("/") == "/" + self.stage
                ):
                    task.is_websocket = True  # type: ignore[attr-defined]
                    await self._serve_websocket(request, reader, writer)
                    return
                try:
                    request.body = await read_body(reader, request)
                except HttpError as exc:
                    writer.write(build_response(exc.status, [], b"", keep_alive=False))
                    return
                status, headers, body = await self._management(request)
                keep_alive = request.keep_alive and not self._stopping
                writer.write(build_response(status, headers, body, keep_alive=keep_alive))
                if not keep_alive:
                    return
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    # -- invocations ------------------------------------------------------------------

    async def _invoke(self, route_key: str, event: dict[str, Any]) -> Invocation:
        runtime = self.runtime
        assert runtime is not None
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, runtime.invoke, route_key, event)
        self._background.add(future)
        future.add_done_callback(self._background.discard)
        try:
            # shield: on timeout the handler keeps running, as a Lambda would.
            record = await asyncio.wait_for(asyncio.shield(future), self.limits.integration_timeout)
        except TimeoutError:
            record = Invocation(
                route_key=route_key,
                connection_id=event["requestContext"]["connectionId"],
                event=event,
                error="integration timeout",
                timed_out=True,
            )
            future.add_done_callback(
                lambda f: self._record(f.result()) if not f.cancelled() else None
            )
            return record
        self._record(record)
        return record

    def _record(self, record: Invocation) -> None:
        if self.on_invocation is not None:
            self.on_invocation(record)

    # -- WebSocket --------------------------------------------------------------------

    async def _serve_websocket(
        self, request: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if request.path.rstrip("/") != "/" + self.stage or self.runtime is None:
            # API Gateway answers any other path on the execute-api host with 403.
            writer.write(
                build_response(
                    403,
                    [("Content-Type", "application/json")],
                    _json({"message": "Forbidden"}),
                    keep_alive=False,
                )
            )
            return
        proto = ServerProtocol(
            max_size=(self.limits.max_message_bytes, self.limits.max_frame_bytes)
        )
        # Feed the raw head so the sans-I/O parser moves past the handshake like it
        # would had it read the socket itself.
        proto.receive_data(request.raw_head)
        handshake = [e for e in proto.events_received() if isinstance(e, Request)]
        if not handshake:
            writer.write(build_response(400, [], b"", keep_alive=False))
            return
        response = proto.accept(handshake[0])
        if response.status_code != 101:
            # Not a valid handshake (e.g. plain GET): let websockets explain why.
            writer.write(response.serialize())
            return
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        info = ClientInfo(
            connection_id=self.connection_id_factory(),
            connected_at_ms=now_ms(),
            source_ip=str(peer[0]),
            user_agent=request.header("user-agent"),
            headers=list(request.headers),
            query_string=request.query,
        )
        if self.runtime.has("$connect"):
            record = await self._invoke("$connect", connect_event(self.context, info, self.port))
            refusal = self._connect_refusal(record)
            if refusal is not None:
                self.stats["refused"] += 1
                writer.write(refusal)
                return
            headers = (record.result or {}).get("headers") or {}
            for name, value in headers.items():
                # The only header API Gateway passes from $connect into the 101 response.
                if name.lower() == "sec-websocket-protocol":
                    response.headers["Sec-WebSocket-Protocol"] = str(value)
        if self._stopping:
            writer.write(build_response(503, [], b"", keep_alive=False))
            return
        conn = ClientSocket(info, proto, writer)
        self.connections[conn.id] = conn
        self.stats["connects"] += 1
        proto.send_response(response)
        self._flush(conn)
        log.info("connected %s from %s", conn.id, info.source_ip)
        watchdog = asyncio.create_task(self._watchdog(conn))
        try:
            await self._read_frames(conn, reader)
        finally:
            watchdog.cancel()
            if conn.abort_handle is not None:
                conn.abort_handle.cancel()
            self.connections.pop(conn.id, None)
            code, reason = self._close_status(conn)
            self.stats["disconnects"] += 1
            log.info("disconnected %s (%d %s)", conn.id, code, reason)
            if self.runtime.has("$disconnect"):
                event = disconnect_event(self.context, info, self.port, code, reason)
                self._spawn(self._invoke("$disconnect", event))

    def _connect_refusal(self, record: Invocation) -> bytes | None:
        """The HTTP response refusing the handshake, or None to accept it."""
        json_headers = [("Content-Type", "application/json")]
        if record.timed_out:
            return build_response(
                504,
                json_headers,
                _json({"message": "Endpoint request timed out"}),
                keep_alive=False,
            )
        result = record.result
        status = result.get("statusCode") if isinstance(result, dict) else None
        if (
            record.error
            or not isinstance(status, int)
            or isinstance(status, bool)
            or not 100 <= status <= 599
        ):
            return build_response(
                500, json_headers, _json({"message": "Internal server error"}), keep_alive=False
            )
        if 200 <= status <= 299:
            return None
        assert isinstance(result, dict)
        body = result.get("body") or ""
        body_bytes = body.encode("utf-8") if isinstance(body, str) else _json(body)
        headers = [
            (str(k), str(v))
            for k, v in (result.get("headers") or {}).items()
            if k.lower() not in ("content-length", "connection", "transfer-encoding")
        ]
        return build_response(status, headers, body_bytes, keep_alive=False)

    async def _read_frames(self, conn: ClientSocket, reader: asyncio.StreamReader) -> None:
        proto = conn.proto
        while True:
            try:
                data = await reader.read(65536)
            except (ConnectionError, OSError):
                data = b""
            if data:
                proto.receive_data(data)
            else:
                proto.receive_eof()
            self._flush(conn)
            for event in proto.events_received():
                if isinstance(event, Frame):
                    self._on_frame(conn, event)
            if not data or proto.state is State.CLOSED:
                return
            if proto.close_expected():
                self._schedule_abort(conn)

    def _on_frame(self, conn: ClientSocket, frame: Frame) -> None:
        conn.touch()  # any frame, control frames included, counts as activity
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self._deliver(conn, bytes(frame.data), opcode is Opcode.TEXT)
            else:
                conn.fragments = [bytes(frame.data)]
                conn.fragments_text = opcode is Opcode.TEXT
        elif opcode is Opcode.CONT and conn.fragments is not None:
            conn.fragments.append(bytes(frame.data))
            if frame.fin:
                payload, conn.fragments = b"".join(conn.fragments), None
                self._deliver(conn, payload, conn.fragments_text)

    def _deliver(self, conn: ClientSocket, payload: bytes, is_text: bool) -> None:
        if not conn.is_open:
            return
        if is_text:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                conn.proto.fail(1007, "invalid UTF-8 in text frame")
                self._flush(conn)
                return
        self.stats["messages_in"] += 1
        event = message_event(self.context, conn.info, payload, is_text)
        self._spawn(self._dispatch_message(conn, event))

    async def _dispatch_message(self, conn: ClientSocket, event: dict[str, Any]) -> None:
        assert self.runtime is not None
        request_id = event["requestContext"]["requestId"]
        if not self.runtime.has("$default"):
            # No route matched and no $default route: API Gateway answers Forbidden.
            message = "Forbidden"
        else:
            record = await self._invoke("$default", event)
            if record.timed_out:
                message = "Endpoint request timed out"
            elif record.error:
                message = "Internal server error"
            else:
                return
        self.send(
            conn, _json({"message": message, "connectionId": conn.id, "requestId": request_id})
        )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _watchdog(self, conn: ClientSocket) -> None:
        """Close with 1001 after the idle timeout or the maximum connection duration."""
        limits = self.limits
        while conn.is_open:
            deadline = min(
                conn.last_active_mono + limits.idle_timeout, conn.opened_mono + limits.max_duration
            )
            delay = deadline - time.monotonic()
            if delay <= 0:
                log.info(
                    "closing %s: %s",
                    conn.id,
                    "idle timeout"
                    if deadline < conn.opened_mono + limits.max_duration
                    else "max duration",
                )
                self.close_connection(conn, 1001, "Going away")
                return
            await asyncio.sleep(delay)

    def send(self, conn: ClientSocket, payload: bytes) -> bool:
        """Send one message: a text frame if the payload is UTF-8, else binary."""
        if not conn.is_open:
            return False
        try:
            payload.decode("utf-8")
            conn.proto.send_text(payload)
        except UnicodeDecodeError:
            conn.proto.send_binary(payload)
        conn.touch()
        self._flush(conn)
        return True

    def close_connection(self, conn: ClientSocket, code: int, reason: str) -> None:
        if conn.is_open:
            conn.proto.send_close(code, reason)
            self._flush(conn)
            self._schedule_abort(conn)

    def _schedule_abort(self, conn: ClientSocket) -> None:
        # The client must answer our close frame (or close TCP) in time; else drop it,
        # which ends the read loop and runs $disconnect.
        if conn.abort_handle is None:
            loop = asyncio.get_running_loop()
            conn.abort_handle = loop.call_later(
                self.limits.close_timeout, conn.writer.transport.abort
            )

    def _flush(self, conn: ClientSocket) -> None:
        writer = conn.writer
        for chunk in conn.proto.data_to_send():
            if writer.is_closing() or conn.eof_sent:
                continue
            if chunk:
                writer.write(chunk)
            else:
                conn.eof_sent = True
                try:
                    if writer.can_write_eof():
                        writer.write_eof()
                    else:
                        writer.close()
                except (OSError, RuntimeError):
                    writer.close()

    @staticmethod
    def _close_status(conn: ClientSocket) -> tuple[int, str]:
        """disconnectStatusCode/Reason: the code of whoever closed first."""
        proto = conn.proto
        received, sent = proto.close_rcvd, proto.close_sent
        if received is not None and (sent is None or proto.close_rcvd_then_sent):
            if received.code == 1005:
                return 1005, NO_STATUS_REASON
            return received.code, received.reason
        if sent is not None:
            return sent.code, sent.reason
        return 1006, ABNORMAL_REASON

    # -- management API -----------------------------------------------------------------

    async def _management(self, request: HttpRequest) -> tuple[int, list[tuple[str, str]], bytes]:
        request_id = str(uuid.uuid4())
        parts = request.path.split("/")
        if (
            len(parts) != 4
            or unquote(parts[1]) != self.stage
            or unquote(parts[2]) != "@connections"
            or not parts[3]
        ):
            self.stats["forbidden"] += 1
            return _error(403, "ForbiddenException", "Forbidden", request_id)
        if not (request.header("authorization") or "").startswith("AWS4-HMAC-SHA256 "):
            # API Gateway rejects unsigned calls before looking at anything else.
            self.stats["forbidden"] += 1
            return _error(403, "ForbiddenException", "Missing Authentication Token", request_id)
        connection_id = unquote(parts[3])
        delay = self.faults.latency_seconds()
        if delay:
            await asyncio.sleep(delay)
        method = request.method
        conn = self.connections.get(connection_id)
        if method == "POST":
            return self._post(conn, request.body, request_id)
        if method == "GET":
            self.stats["gets"] += 1
            if conn is None or not conn.is_open:
                self.stats["gone"] += 1
                return _error(410, "GoneException", "", request_id)
            info = conn.info
            # The wire names are lower camel case; botocore maps them to ConnectedAt etc.
            return (
                200,
                [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)],
                _json(
                    {
                        "connectedAt": iso8601(info.connected_at_ms),
                        "identity": {"sourceIp": info.source_ip, "userAgent": info.user_agent},
                        "lastActiveAt": iso8601(conn.last_active_ms),
                    }
                ),
            )
        if method == "DELETE":
            self.stats["deletes"] += 1
            if conn is None or not conn.is_open:
                self.stats["gone"] += 1
                return _error(410, "GoneException", "", request_id)
            self.close_connection(conn, 1000, "")
            return 204, [("x-amzn-RequestId", request_id)], b""
        self.stats["forbidden"] += 1
        return _error(403, "ForbiddenException", "Forbidden", request_id)

    def _post(
        self, conn: ClientSocket | None, body: bytes, request_id: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        self.stats["posts"] += 1
        fault = self.faults.draw_post_fault()
        if fault == THROTTLE:
            self.stats["throttled"] += 1
            return _error(429, "LimitExceededException", "Rate exceeded", request_id)
        if fault == ERROR:
            self.stats["injected_errors"] += 1
            return _error(500, "InternalServerErrorException", "Internal server error", request_id)
        if len(body) > self.limits.max_post_bytes:
            self.stats["too_large"] += 1
            return _error(413, "PayloadTooLargeException", "Request entity too large", request_id)
        if conn is None or not conn.is_open:
            self.stats["gone"] += 1
            return _error(410, "GoneException", "", request_id)
        if conn.writer.transport.get_write_buffer_size() > self.limits.send_buffer_limit:
            # The client is not reading: API Gateway's "client side buffer is full".
            self.stats["throttled"] += 1
            return _error(429, "LimitExceededException", "Client buffer is full", request_id)
        self.send(conn, body)
        self.stats["posts_ok"] += 1
        return 200, [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)], b""
