"""switchboard's behaviour: the three WebSocket events and the HTTP push API.

app.py only wires Chalice's decorators to these methods; everything here takes its
collaborators (registry, gateway, broadcaster) in the constructor so tests can pass fakes
(``wiring.build_switchboard`` builds the real ones).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, assert_never

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib import log, protocol
from chalicelib.auth import AuthError, Identity, connect_identity, require_admin_bearer
from chalicelib.aws_errors import error_code, is_throttling
from chalicelib.broadcaster import Broadcaster, PayloadTooLarge, Report
from chalicelib.config import Settings
from chalicelib.continuation import Continuation, emit_metrics, queries_for
from chalicelib.idempotency import (
    AlreadySent,
    Claim,
    ClientMsgIdReused,
    DuplicateSend,
    SendLedger,
)
from chalicelib.limits import Limits
from chalicelib.management_api import ManagementApi, Outcome
from chalicelib.message_log import LogWriteError, MessageLog
from chalicelib.presence import Presence
from chalicelib.protocol import Scope
from chalicelib.registry import (
    ConnectionRecord,
    DuplicateConnection,
    NotConnected,
    Registry,
    Target,
)
from chalicelib.replay import Replayer, page_fields
from chalicelib.ws_event import WsEvent

Frame = dict[str, Any]
_PLAIN_INT_RE = re.compile(r"-?[0-9]{1,16}")


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: Any = None


class BadRequest(ValueError):
    """An HTTP request body or path parameter is invalid (400)."""


class NotFound(LookupError):
    """The HTTP path names something that does not exist (404)."""


class Switchboard:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        gateway: ManagementApi,
        broadcaster: Broadcaster,
        message_log: MessageLog,
        sends: SendLedger | None = None,
        limits: Limits | None = None,
        continuation: Continuation | None = None,
    ) -> None:
        self.settings = settings
        # None: a fan-out that reaches its deadline reports the rest failed (no SQS queue).
        self.continuation = continuation
        self.registry = registry
        self.gateway = gateway
        self.broadcaster = broadcaster
        self.message_log = message_log
        self.replayer = Replayer(message_log, settings.history_max_replay)
        self.sends = sends or SendLedger(message_log, ttl_seconds=settings.idempotency_ttl_seconds)
        self.presence = Presence(
            registry,
            message_log,
            broadcaster,
            settings.presence_max_members,
            settings.presence_max_list,
        )
        self.limits = limits if limits is not None else Limits.over(registry, settings)

    # --- WebSocket events -----------------------------------------------------------------

    def on_connect(self, raw_event: dict[str, Any]) -> HttpResult:
        """Register the connection, or refuse the handshake with a 4xx/5xx status."""
        event = WsEvent(raw_event, self.settings.endpoint_rule)
        with log.event_log(
            event="connect", connectionId=event.connection_id, requestId=event.request_id
        ) as record:
            try:
                identity = connect_identity(event.query, self.settings)
            except AuthError as exc:
                record.update(outcome="refused", status=exc.status, reason=str(exc))
                return HttpResult(exc.status, {"message": str(exc)})
            record["userId"] = identity.user_id
            refusal = self._connection_refusal(identity.user_id, record)
            if refusal is not None:
                record.update(outcome="too_many_connections", status=429)
                return HttpResult(429, {"message": refusal})
            try:
                self.registry.register(
                    event.connection_id,
                    identity.user_id,
                    event.connected_at or protocol.now_ms(),
                    endpoint=event.endpoint,
                    role=identity.role,
                    token_expires_at=identity.expires_at,
                )
            except DuplicateConnection:
                record.update(outcome="duplicate", status=409)
                return HttpResult(409, {"message": "connection already registered"})
            except (ClientError, BotoCoreError) as exc:
                record.update(outcome="registry_error", status=500, error=error_code(exc))
                return HttpResult(500, {"message": "could not register the connection"})
            return HttpResult(200)

    def _connection_refusal(self, user_id: str, record: dict[str, Any]) -> str | None:
        """Why the per-user connection cap refuses this handshake, or None. Fails open: a
        count DynamoDB cannot answer lets the handshake go on to its own registration."""
        try:
            return self.limits.connection_refusal(user_id)
        except (ClientError, BotoCoreError) as exc:
            record["limitError"] = error_code(exc)
            return None

    def on_disconnect(self, raw_event: dict[str, Any]) -> HttpResult:
        """Remove the connection and its memberships; idempotent, best effort like AWS."""
        event = WsEvent(raw_event, self.settings.endpoint_rule)
        with log.event_log(
            event="disconnect",
            connectionId=event.connection_id,
            requestId=event.request_id,
            closeCode=event.disconnect_status,
        ) as record:
            try:
                record["existed"] = self.forget(event.connection_id)
            except (ClientError, BotoCoreError) as exc:
                # TTL reaps what we could not delete, and every read filters expired items.
                record.update(outcome="registry_error", error=error_code(exc))
            return HttpResult(200)

    def on_message(self, raw_event: dict[str, Any]) -> HttpResult:
        """Dispatch one client frame. Bad input gets an error frame; nothing raises."""
        event = WsEvent(raw_event, self.settings.endpoint_rule)
        with log.event_log(
            event="message", connectionId=event.connection_id, requestId=event.request_id
        ) as record:
            command = protocol.parse_frame(event.body, self.settings.max_text_chars)
            record["action"] = type(command).__name__
            # Every frame counts, malformed ones too: each is an invocation all the same.
            verdict = self.limits.take_frame(event.connection_id)
            if verdict.error:
                record["rateLimitError"] = verdict.error  # let through: limits fail open
            if not verdict.allowed:
                record.update(outcome="rate_limited", retryAfterMs=verdict.retry_after_ms)
                self._reply(event, verdict.frame(command.ref), record)
                return HttpResult(200)
            if isinstance(command, protocol.ProtocolError):
                record.update(outcome="rejected", code=command.code)
                self._reply(event, command.frame(), record)
                return HttpResult(200)
            try:
                frame = self._dispatch(event, command, record)
            except NotConnected:
                record["outcome"] = "not_registered"
                frame = protocol.error_frame(
                    "not_found", "this connection is not registered; reconnect", command.ref
                )
            except PayloadTooLarge as exc:
                frame = protocol.error_frame("too_large", str(exc), command.ref)
            except DuplicateSend as exc:
                # A retry of a send made (or being made) already: nothing is sent again.
                record["outcome"] = type(exc).__name__
                frame = exc.frame(command.ref)
            except LogWriteError as exc:
                # Logged before sent: a message the log could not take is not sent at all.
                cause = exc.__cause__ if isinstance(exc.__cause__, Exception) else exc
                throttled = is_throttling(cause)
                record.update(outcome="log_error", error=error_code(cause))
                frame = protocol.error_frame(
                    "rate_limited" if throttled else "internal",
                    "the message could not be logged; nothing was sent, retry shortly",
                    command.ref,
                )
            except (ClientError, BotoCoreError) as exc:
                throttled = is_throttling(exc)
                record.update(outcome="registry_error", error=error_code(exc))
                frame = protocol.error_frame(
                    "rate_limited" if throttled else "internal",
                    "the service is busy, retry shortly"
                    if throttled
                    else "the message could not be processed; nothing was sent",
                    command.ref,
                )
            except Exception as exc:  # noqa: BLE001 - the client gets a frame, the log the type
                logging.getLogger("switchboard").exception("unhandled error in message handler")
                record.update(outcome="internal_error", error=type(exc).__name__)
                frame = protocol.error_frame("internal", "internal error", command.ref)
            if frame is not None:
                self._reply(event, frame, record)
            return HttpResult(200)

    def _dispatch(
        self, event: WsEvent, command: protocol.Command, record: dict[str, Any]
    ) -> Frame | None:
        """One command's reply frame. Every command but ping acts for a registered connection;
        a send's ``PayloadTooLarge`` and registry errors are left to ``on_message``."""
        # Without auth there is no token to expire: a ping needs no registry read then.
        if isinstance(command, protocol.Ping) and self.settings.auth_mode == "none":
            return protocol.pong_frame(command.ref)
        conn = self.registry.get(event.connection_id)
        if conn is not None and conn.token_expired(self.registry.now()):
            self._expire(event, conn, command, record)
            return None
        if isinstance(command, protocol.Ping):
            return protocol.pong_frame(command.ref)
        if conn is None:
            record["outcome"] = "not_registered"
            return protocol.error_frame(
                "not_found", "this connection is not registered (expired?); reconnect", command.ref
            )
        record["userId"] = conn.user_id
        match command:
            case protocol.WhoAmI():
                return protocol.identity_frame(
                    conn.connection_id, conn.user_id, list(conn.rooms), command.ref, conn.role
                )
            case protocol.Join():
                return self._join(conn, command)
            case protocol.Leave():
                return self._leave(conn, command)
            case protocol.SendMessage():
                return self._send_message(conn, command, record)
            case protocol.SendRoom():
                return self._send_room(conn, command, record)
            case protocol.BroadcastAll():
                return self._broadcast_all(conn, command, record)
            case protocol.Resume():
                return self._resume(event, conn, command, record)
            case protocol.History():
                return self.replayer.history(command, conn.user_id, conn.rooms)
            case protocol.Members():
                if command.room not in conn.rooms:
                    return protocol.error_frame(
                        "forbidden", f"join {command.room!r} to see its members", command.ref
                    )
                return protocol.members_frame(
                    command.ref, self.presence.members(command.room).as_dict()
                )
            case _:
                assert_never(command)

    def _expire(
        self,
        event: WsEvent,
        conn: ConnectionRecord,
        command: protocol.Command,
        record: dict[str, Any],
    ) -> None:
        """The token the connection was made with has expired: its rights end with it (as
        Ably and Pusher end sessions). Tell the client, then close the socket and forget it."""
        record.update(userId=conn.user_id, outcome="token_expired")
        frame = protocol.error_frame(
            "forbidden", "token expired; reconnect with a fresh token", command.ref
        )
        self._reply(event, frame, record)  # before the close: a closed socket gets nothing
        record["close"] = self.gateway.close(conn.connection_id, event.endpoint).value
        self.forget(conn.connection_id)

    def forget(self, connection_id: str) -> bool:
        """Remove a connection and announce the rooms its user left with it: ``$disconnect``,
        a kick, an expired token, and the broadcaster's 410 prune (see wiring.py) all come here.
        """
        return self.presence.remove(connection_id)

    def _join(self, conn: ConnectionRecord, command: protocol.Join) -> Frame:
        if command.room not in conn.rooms:
            limit = self.settings.max_rooms_per_connection
            if len(conn.rooms) >= limit:
                return protocol.error_frame(
                    "forbidden", f"at most {limit} rooms per connection", command.ref
                )
            refusal = self.limits.room_refusal(conn, command.room)
            if refusal is not None:
                return protocol.error_frame("forbidden", refusal, command.ref)
            self.presence.join(conn, command.room)
        return protocol.ack_frame(command.ref, 0, 0, room=command.room, joined=True)

    def _leave(self, conn: ConnectionRecord, command: protocol.Leave) -> Frame:
        if command.room not in conn.rooms:
            return protocol.error_frame(
                "not_found", f"not a member of {command.room!r}", command.ref
            )
        self.presence.leave(conn, command.room)
        return protocol.ack_frame(command.ref, 0, 0, room=command.room, left=True)

    def _resume(
        self,
        event: WsEvent,
        conn: ConnectionRecord,
        command: protocol.Resume,
        record: dict[str, Any],
    ) -> Frame | None:
        def post(data: bytes) -> Outcome:
            return self.gateway.post(conn.connection_id, data, event.endpoint)

        frame = self.replayer.resume(command, conn.user_id, conn.rooms, post)
        if frame is None:
            record["outcome"] = "gone_during_resume"
            self.broadcaster.prune(conn.connection_id)
            return None
        record["replayed"] = sum(s.get("replayed", 0) for s in frame["streams"].values())
        return frame

    def _send_message(
        self, conn: ConnectionRecord, command: protocol.SendMessage, record: dict[str, Any]
    ) -> Frame:
        """A direct message is answered the same way whoever the recipient is, online or not:
        an ack that it was stored (logged for the recipient's resume), with its ``id``. Not the
        recipient stream's ``seq`` (how many DMs they got; the sender does not read that
        stream) and, unless ``dm_receipts``, no delivery counts (whether and on how many
        devices they are online)."""
        try:
            message, report = self._send(
                conn,
                Scope.USER,
                command.target_user_id,
                command.text,
                record,
                command.client_msg_id,
            )
        except AlreadySent as exc:  # a retried send: the same answer, nothing sent again
            record["outcome"] = "AlreadySent"
            receipts = {"delivered": 0, "failed": 0, "gone": 0} if self.settings.dm_receipts else {}
            return protocol.dm_ack_frame(command.ref, exc.message_id, duplicate=True, **receipts)
        if not self.settings.dm_receipts:
            return protocol.dm_ack_frame(command.ref, message["id"])
        continued = {"continued": report.continued} if report.continued else {}
        return protocol.dm_ack_frame(
            command.ref,
            message["id"],
            delivered=report.delivered,
            failed=report.failed,
            gone=report.gone,
            **continued,
        )

    def _send_room(
        self, conn: ConnectionRecord, command: protocol.SendRoom, record: dict[str, Any]
    ) -> Frame:
        if command.room not in conn.rooms:
            return protocol.error_frame(
                "forbidden", f"join {command.room!r} before sending to it", command.ref
            )
        message, report = self._send(
            conn, Scope.ROOM, command.room, command.text, record, command.client_msg_id
        )
        return _ack(command.ref, message, report)

    def _broadcast_all(
        self, conn: ConnectionRecord, command: protocol.BroadcastAll, record: dict[str, Any]
    ) -> Frame:
        if not self._may_broadcast(conn):
            return protocol.error_frame(
                "forbidden", "broadcastAll needs the admin role", command.ref
            )
        message, report = self._send(
            conn, Scope.ALL, None, command.text, record, command.client_msg_id
        )
        return _ack(command.ref, message, report)

    def _send(
        self,
        conn: ConnectionRecord,
        scope: Scope,
        name: str | None,
        text: str,
        record: dict[str, Any],
        client_msg_id: str | None = None,
    ) -> tuple[Frame, Report]:
        """Log a client's message in its stream, then fan it out to its audience, except the
        sending connection itself. A ``client_msg_id`` used before raises ``DuplicateSend``."""
        audience, message = self._audience(scope, name, conn.user_id, text)
        message = self._log(scope, name, message, record, client_msg_id)
        report = self._fan_out(scope, name, audience, message, conn.connection_id)
        record.update(report.as_dict())
        return message, report

    def _fan_out(
        self,
        scope: Scope,
        name: str | None,
        targets: Iterable[Target],
        message: Frame,
        exclude: str | None = None,
    ) -> Report:
        """Fan a logged message out; with a continuation queue, over a resumable audience
        whose rest goes to SQS at the deadline. One EMF metrics line either way."""
        if self.continuation is None:
            report = self.broadcaster.fan_out(
                targets, protocol.encode(message), exclude=exclude, scope=scope.value
            )
        else:
            audience = self.continuation.audience(queries_for(self.registry, scope.value, name))
            report = self.broadcaster.fan_out(
                audience, protocol.encode(message), exclude=exclude, scope=scope.value
            )
            self.continuation.hand_off(report, audience, message, exclude, scope.value)
        emit_metrics(report, scope.value, stream=message["stream"], seq=message["seq"], hop=0)
        return report

    def _audience(
        self, scope: Scope, name: str | None, sender: str, text: str
    ) -> tuple[Iterable[Target], Frame]:
        """Who a message goes to (read lazily, as the fan-out iterates) and its frame. ``name``
        is the user id or room; checking it and the sender's rights is the caller's policy."""
        match scope:
            case Scope.USER:
                targets = self.registry.user_connections(str(name))
                return targets, protocol.message_frame(sender, scope, text)
            case Scope.ROOM:
                targets = self.registry.room_members(str(name))
                return targets, protocol.message_frame(sender, scope, text, str(name))
            case Scope.ALL:
                return self.registry.all_connections(), protocol.message_frame(sender, scope, text)
            case _:
                assert_never(scope)

    def _log(
        self,
        scope: Scope,
        name: str | None,
        message: Frame,
        record: dict[str, Any],
        client_msg_id: str | None = None,
    ) -> Frame:
        """Store ``message`` in its stream before anyone gets it; the frame as logged, with
        ``stream`` and ``seq``. Raises ``LogWriteError``: then nothing may be sent; with a
        ``client_msg_id`` used before, ``DuplicateSend`` (idempotency.py): nothing either."""
        stream = protocol.stream_name(scope, name)
        claim: Claim | None = None
        if client_msg_id is not None:
            claim = self.sends.claim(message["from"], client_msg_id, stream, message["text"])
        try:
            logged = self.message_log.append(stream, message)
        except LogWriteError:
            if claim is not None:
                self.sends.release(claim)  # nothing was sent: a retry may send
            raise
        record.update(stream=logged["stream"], seq=logged["seq"])
        if claim is not None:
            try:
                self.sends.complete(claim, logged)
            except (ClientError, BotoCoreError) as exc:
                # Logged: send it. A repeat meets a pending claim ("retry") until it is stale.
                record["idempotency"] = error_code(exc)
        return logged

    def _may_broadcast(self, conn: ConnectionRecord) -> bool:
        return self.settings.auth_mode == "none" or conn.role == self.settings.admin_role

    def _reply(self, event: WsEvent, frame: dict[str, Any], record: dict[str, Any]) -> None:
        outcome = self.gateway.post(event.connection_id, protocol.encode(frame), event.endpoint)
        if outcome is not Outcome.DELIVERED:
            # The sender never gets this ack or error (retries ran out): the log says so.
            record["reply"] = outcome.value
        if outcome is Outcome.GONE:
            self.broadcaster.prune(event.connection_id)

    # --- HTTP API -------------------------------------------------------------------------

    def authorize_http(self, authorization: str | None) -> Identity:
        return require_admin_bearer(authorization, self.settings)

    def push(
        self, scope: Scope | str, name: str | None, body: Any, sender: Identity
    ) -> dict[str, Any]:
        """POST /broadcast, /users/{userId}/messages, /rooms/{room}/messages.

        An unknown ``scope`` raises ValueError before anything is read or sent (a misspelled
        scope must never mean "everyone").
        """
        scope = Scope(scope)
        if not isinstance(body, dict):
            raise BadRequest('body must be a JSON object like {"text": "hello"}')
        try:
            text = protocol.validate_text(body.get("text"), self.settings.max_text_chars)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        client_msg_id = body.get("clientMsgId")
        if client_msg_id is not None and not protocol.valid_client_msg_id(client_msg_id):
            raise BadRequest("clientMsgId must be 1-64 characters of A-Z a-z 0-9 _ . : -")
        _check_path_name(scope, name)
        targets, message = self._audience(scope, name, sender.user_id, text)
        with log.event_log(event="http_push", scope=scope.value) as record:
            try:
                message = self._log(scope, name, message, record, client_msg_id)
            except AlreadySent as exc:  # a retried push: the original answer, nothing sent
                record["outcome"] = "AlreadySent"
                return {**exc.answer(), "recipients": 0}
            except ClientMsgIdReused as exc:
                raise BadRequest(str(exc)) from None
            report = self._fan_out(scope, name, targets, message)
            record.update(report.as_dict())
        return {
            "id": message["id"],
            "stream": message["stream"],
            "seq": message["seq"],
            **report.as_dict(),
        }

    def history(self, scope: Scope | str, name: str, after: Any, limit: Any) -> dict[str, Any]:
        """GET /rooms/{room}/messages and /users/{userId}/messages (admin: any stream)."""
        scope = Scope(scope)
        _check_path_name(scope, name)
        after_seq = _query_int(after, "after", 0, 0, protocol.MAX_SEQ)
        page_limit = _query_int(
            limit, "limit", protocol.HISTORY_DEFAULT_LIMIT, 1, protocol.HISTORY_MAX_LIMIT
        )
        stream = protocol.stream_name(scope, name)
        page = self.message_log.read(stream, after_seq, page_limit)
        return {"stream": stream, "messages": page.messages, "next": page.next, **page_fields(page)}

    def members(self, room: str) -> dict[str, Any]:
        """GET /rooms/{room}/members: who is present (admin: any room)."""
        _check_path_name(Scope.ROOM, room)
        return self.presence.members(room).as_dict()

    def connections(self) -> dict[str, Any]:
        """GET /connections: how many live connections, by user (an index Query, no Scan)."""
        by_user: dict[str, int] = {}
        count = 0
        for target in self.registry.all_connections():
            count += 1
            user = target.user_id or "?"
            by_user[user] = by_user.get(user, 0) + 1
        return {"count": count, "users": len(by_user), "byUser": by_user}

    def kick(self, connection_id: str) -> None:
        """DELETE /connections/{id}: close the socket and forget it."""
        if not protocol.valid_connection_id(connection_id):
            raise BadRequest("not a connection id")
        conn = self.registry.get(connection_id)
        if conn is None and not self.settings.management_endpoint:
            raise NotFound(f"connection {connection_id} not found")
        outcome = self.gateway.close(connection_id, conn.endpoint if conn else None)
        self.forget(connection_id)
        if outcome is Outcome.GONE and conn is None:
            raise NotFound(f"connection {connection_id} not found")
        if outcome not in (Outcome.DELIVERED, Outcome.GONE):
            raise RuntimeError(f"closing the connection failed: {outcome.value}")


def _ack(ref: protocol.Ref, message: Frame, report: Report) -> Frame:
    # How many recipients a continuation took over, only when one did.
    continued = {"continued": report.continued} if report.continued else {}
    return protocol.ack_frame(
        ref,
        report.delivered,
        report.failed,
        report.gone,
        id=message["id"],
        stream=message["stream"],
        seq=message["seq"],
        **continued,
    )


def _check_path_name(scope: Scope, name: str | None) -> None:
    """The user id or room an HTTP path names, as the protocol accepts them (400 otherwise)."""
    if scope is Scope.USER and not protocol.valid_user_id(name):
        raise BadRequest("userId must be 1-128 characters of A-Z a-z 0-9 _ . : @ | + -")
    if scope is Scope.ROOM and not protocol.valid_room(name):
        raise BadRequest("room must be 1-64 characters of A-Z a-z 0-9 _ . : -")


def _query_int(raw: Any, name: str, default: int, low: int, high: int) -> int:
    """A query parameter as a plain decimal integer (ASCII digits, at most 16 of them: no
    full-width digits, spaces or underscores, which ``int()`` would accept)."""
    if raw is None or raw == "":
        return default
    text = str(raw)
    if not _PLAIN_INT_RE.fullmatch(text):
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}")
    return value


__all__ = ["BadRequest", "HttpResult", "NotConnected", "NotFound", "Scope", "Switchboard"]
