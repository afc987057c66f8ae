"""The WebSocket API and the @connections management API, on one asyncio port.

* ``GET /{stage}`` with ``Upgrade: websocket``: runs ``$connect`` *before* answering the
  handshake (a non-2xx status refuses it), then every data message becomes a ``$default``
  invocation and every close a ``$disconnect`` invocation.
* ``POST|GET|DELETE /{stage}/@connections/{id}``: the management API, with the error
  types and ``x-amzn-ErrorType`` header that botocore turns into ``client.exceptions.*``
  (answered by ``connections_api.ConnectionsApi``; this module only reads and writes HTTP).

Each open WebSocket is a ``client_socket.ClientSocket``, which reads, sends and closes;
this module decides what a message or a close means (invocations, timeouts, stats).

Everything socket-related runs on one event loop; only handler invocations go to the
thread pool, so thousands of concurrent @connections POSTs cost no thread each.
WebSocket framing uses the sans-I/O protocol of the websockets library, which also
enforces the message (128 KB) and frame (32 KB) limits with close code 1009. A binary
frame from a client closes the socket with 1003, as on AWS.

The port listens on a developer's machine, so beyond API Gateway's behaviour it refuses a
``Host`` or ``Origin`` that ``port_guard`` does not allow, drops sockets that send no request
head in time (slowloris) or sit idle between keep-alive requests, and caps open sockets: at
the cap the socket that has waited longest without a request head makes room for the new one.
Handshake refusals (the gateway's own and ``$connect``'s) are built by ``refusals``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from websockets.http11 import Request
from websockets.server import ServerProtocol

from local_gateway.client_socket import ClientSocket, Message
from local_gateway.connections_api import ConnectionsApi
from local_gateway.faults import FaultInjector
from local_gateway.http11 import (
    HttpError,
    HttpRequest,
    build_response,
    read_body,
    read_request_head,
)
from local_gateway.lambda_events import (
    ClientInfo,
    EventContext,
    connect_event,
    disconnect_event,
    gateway_error_frame,
    message_event,
    new_aws_id,
    now_ms,
)
from local_gateway.lambda_runtime import Invocation, LambdaRuntime
from local_gateway.port_guard import AcceptErrorLog, default_hosts, host_allowed, origin_allowed
from local_gateway.quotas import Quotas
from local_gateway.refusals import connect_refusal, gateway_refusal
from local_gateway.sigv4 import SigV4Verifier
from local_gateway.stats import GatewayStats

log = logging.getLogger("local_gateway")

# AWS documents the code (1003), not the reason text; this one is ours.
BINARY_FRAME_REASON = "Binary frames are not supported"


class ClientKind(enum.Enum):
    """What a client TCP connection turned out to be; stop() waits for WebSockets."""

    HTTP = "http"  # management API requests, kept alive
    WEBSOCKET = "websocket"


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
        limits: Quotas | None = None,
        faults: FaultInjector | None = None,
        runtime: LambdaRuntime | None = None,
        connection_id_factory: Callable[[], str] = new_aws_id,
        on_invocation: Callable[[Invocation], None] | None = None,
        custom_domain: str | None = None,
        base_path: str = "",
        verifier: SigV4Verifier | None = None,
        allowed_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.host = host
        # With a custom domain, every client counts as having dialled it: events carry it as
        # domainName, as API Gateway's do for connections made through the domain.
        self.custom_domain = custom_domain
        self.requested_port = port
        self.stage = stage
        self.api_id = api_id
        self.executor = executor
        self.limits = limits or Quotas()
        self.faults = faults or FaultInjector()
        self.runtime = runtime  # set once the app is imported (it needs our port first)
        self.connection_id_factory = connection_id_factory
        self.on_invocation = on_invocation
        self.connections: dict[str, ClientSocket] = {}
        self.stats = GatewayStats()
        self.management = ConnectionsApi(
            stage=stage,
            connections=self.connections,
            limits=self.limits,
            faults=self.faults,
            stats=self.stats,
            custom_domain=custom_domain,
            base_path=base_path,
            verifier=verifier,
        )
        # Browser origins allowed to open a WebSocket ("*": any); the emulator adds the REST
        # server's once it has a port.
        self.allowed_origins = {o.lower() for o in allowed_origins}
        self.extra_hosts = {h.lower() for h in allowed_hosts}
        if custom_domain:
            # --custom-domain: requests name the custom domain (what a client of it sends).
            domain = custom_domain.lower()
            self.extra_hosts |= {domain, f"{domain}:443"}
        self.allowed_hosts = self.extra_hosts | default_hosts(host, port)
        self.accept_errors = AcceptErrorLog()
        self._waiting: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}  # no request head yet
        self._server: asyncio.base_events.Server | None = None
        self._tasks: dict[asyncio.Task[Any], ClientKind] = {}  # every client connection
        self._background: set[asyncio.Future[Any]] = set()  # invocations in flight
        self._stopping = False
        self.port = port
        self.context = self._event_context()
        # Local-only GET pages on this port, by path (e.g. /events: the events sink); each
        # gets the query string and answers (status, headers, body).
        self.pages: dict[str, Callable[[str], tuple[int, list[tuple[str, str]], bytes]]] = {}

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
        self.allowed_hosts = self.extra_hosts | default_hosts(self.host, self.port)
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def on_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if self.accept_errors.handles(context):
                self.accept_errors.record(context)
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(on_exception)
        self.context = self._event_context()

    def _event_context(self) -> EventContext:
        domain = self.custom_domain or f"{self.host}:{self.port}"
        return EventContext(domain_name=domain, stage=self.stage, api_id=self.api_id)

    def stats_snapshot(self) -> GatewayStats:
        """A copy of the counters, with the number of open connections."""
        return replace(self.stats, open_connections=len(self.connections))

    async def stop(self) -> None:
        """Stop accepting, close every socket with 1001 (running $disconnect), drain."""
        self._stopping = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections.values()):
            conn.close(1001, "Going away")
        ws_tasks = [t for t, kind in self._tasks.items() if kind is ClientKind.WEBSOCKET]
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
        if len(self._tasks) >= self.limits.max_sockets and not self._evict_waiting():
            # Every socket under the cap is in use: this one goes at once.
            writer.transport.abort()
            return
        self._tasks[task] = ClientKind.HTTP
        # The first head must arrive within head_timeout (slowloris); later ones, on a
        # kept-alive connection, within keepalive_timeout (idle sockets).
        timeout = self.limits.head_timeout
        try:
            while not self._stopping:
                self._waiting[task] = writer
                try:
                    request = await asyncio.wait_for(read_request_head(reader), timeout)
                except HttpError as exc:
                    writer.write(build_response(exc.status, [], b"", keep_alive=False))
                    return
                except TimeoutError:
                    return
                finally:
                    self._waiting.pop(task, None)
                if request is None:
                    return
                if not host_allowed(request, self.allowed_hosts):
                    log.warning("refused a request for Host %r", request.header("host"))
                    writer.write(gateway_refusal(403, "Forbidden"))
                    return
                if request.is_websocket_upgrade or (
                    request.method == "GET" and request.path.rstrip("/") == "/" + self.stage
                ):
                    self._tasks[task] = ClientKind.WEBSOCKET
                    await self._serve_websocket(request, reader, writer)
                    return
                try:
                    request.body = await asyncio.wait_for(
                        read_body(reader, request), self.limits.head_timeout
                    )
                except HttpError as exc:
                    writer.write(build_response(exc.status, [], b"", keep_alive=False))
                    return
                except TimeoutError:
                    return
                keep_alive = request.keep_alive and not self._stopping
                page = self.pages.get(request.path) if request.method == "GET" else None
                if page is not None:
                    status, headers, body = page(request.query)
                else:
                    response = await self.management.handle(request)
                    status, headers, body = response.status, response.headers, response.body
                writer.write(build_response(status, headers, body, keep_alive=keep_alive))
                if not keep_alive:
                    return
                await writer.drain()
                timeout = self.limits.keepalive_timeout
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.pop(task, None)
            writer.close()

    def _evict_waiting(self) -> bool:
        """Drop the socket that has waited longest for a request head; False if none waits."""
        if not self._waiting:
            return False
        task, writer = next(iter(self._waiting.items()))
        del self._waiting[task]
        self._tasks.pop(task, None)
        writer.transport.abort()
        task.cancel()
        return True

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
            writer.write(gateway_refusal(403, "Forbidden"))
            return
        if not origin_allowed(request, self.allowed_origins):
            # A page on another origin (any site the developer visits) may not connect.
            log.warning("refused a handshake from Origin %r", request.header("origin"))
            self.stats.refused += 1
            writer.write(gateway_refusal(403, "Forbidden"))
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
            refusal = connect_refusal(record)
            if refusal is not None:
                self.stats.refused += 1
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
        conn = ClientSocket(
            info,
            proto,
            reader,
            writer,
            self.limits.close_timeout,
            max_frame_bytes=self.limits.max_frame_bytes,
        )
        self.connections[conn.id] = conn
        self.stats.connects += 1
        conn.accept(response)
        log.info("connected %s from %s", conn.id, info.source_ip)
        watchdog = asyncio.create_task(self._watchdog(conn))
        try:
            async for message in conn.messages():
                self._deliver(conn, message)
        finally:
            watchdog.cancel()
            conn.cancel_abort()
            self.connections.pop(conn.id, None)
            code, reason = conn.close_status()
            self.stats.disconnects += 1
            log.info("disconnected %s (%d %s)", conn.id, code, reason)
            if self.faults.drop_disconnect():  # best effort on AWS too (faults.py)
                log.info("dropped the $disconnect of %s (fault injection)", conn.id)
            elif self.runtime.has("$disconnect"):
                event = disconnect_event(self.context, info, self.port, code, reason)
                self._spawn(self._invoke("$disconnect", event))

    def _deliver(self, conn: ClientSocket, message: Message) -> None:
        if not message.is_text:
            # "API Gateway WebSocket APIs don't currently support binary frames in incoming
            # message payloads. If a client app sends a binary frame, API Gateway rejects it
            # and disconnects the client with code 1003." ("Binary media types for WebSocket
            # APIs in API Gateway", API Gateway developer guide). No handler runs for it.
            log.info("closing %s: binary frame", conn.id)
            conn.close(1003, BINARY_FRAME_REASON)
            return
        self.stats.messages_in += 1
        event = message_event(self.context, conn.info, message.payload.decode("utf-8"))
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
        conn.send(gateway_error_frame(message, conn.id, request_id))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
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
                conn.close(1001, "Going away")
                return
            await asyncio.sleep(delay)
