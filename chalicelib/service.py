"""switchboard's behaviour: the three WebSocket events, the HTTP push API and the SQS
continuation of a fan-out.

app.py only wires Chalice's decorators to these methods; everything here takes its
collaborators (registry, gateway, broadcaster) in the constructor so tests can pass fakes
(``wiring.build_switchboard`` builds the real ones).

Closed connections found by a fan-out or a reply are removed, and their leaves announced,
by ``Departures`` (departures.py) after the fan-out, never from inside it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, assert_never

from chalicelib import log, metrics, protocol
from chalicelib.access import Access, Checked, PermissionDenied
from chalicelib.audience import Audience
from chalicelib.auth import (
    AuthError,
    Identity,
    connect_identity,
    require_admin_bearer,
    require_user_bearer,
    verify_token,
)
from chalicelib.authorizer import Authorizer, AuthorizerUnavailable
from chalicelib.broadcaster import Broadcaster, Report
from chalicelib.bus import ClosedBy, Events, flush_quietly
from chalicelib.capabilities import Operation
from chalicelib.config import Settings
from chalicelib.departures import Departures, Settled
from chalicelib.devices import Devices, parse_registration
from chalicelib.ephemeral import EphemeralRule, RuleFor, resolve
from chalicelib.errors import (
    BadRequest,
    BadToken,
    ContinuationBatchFailed,
    Forbidden,
    NotFound,
    NotRegistered,
    TokenExpired,
    classify,
    reject_unknown_query,
)
from chalicelib.idempotency import AlreadySent, Claim, SendLedger
from chalicelib.limits import Limits, SlotClaim, Verdict
from chalicelib.management_api import ManagementApi, Outcome
from chalicelib.message import Message
from chalicelib.message_log import MessageLog
from chalicelib.namespaces import HistorySince
from chalicelib.namespaces import load as load_namespaces
from chalicelib.permissions import Grant
from chalicelib.presence import ENTER, Announcement, Presence
from chalicelib.protocol import Scope
from chalicelib.registry import (
    ConnectionRecord,
    DuplicateConnection,
    ItemConflict,
    NotConnected,
    Registry,
    RoomLimitReached,
    record_of,
)
from chalicelib.replay import Bounds, Replayer
from chalicelib.ws_event import WsEvent

if TYPE_CHECKING:  # imported by wiring.py only when a queue is configured
    from chalicelib.continuation import Continuation

Frame = dict[str, Any]
_PLAIN_INT_RE = re.compile(r"-?[0-9]{1,16}")
_logger = logging.getLogger("switchboard")


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: Any = None


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
        presence: Presence | None = None,
        events: Events | None = None,
        ephemeral_rule: RuleFor | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.settings = settings
        # Back-end events (bus.py): collected while a handler runs, flushed at its very end.
        self.events = events or Events()
        # None: a fan-out that reaches its deadline reports the rest failed (no SQS queue).
        self.continuation = continuation
        self.registry = registry
        self.gateway = gateway
        self.broadcaster = broadcaster
        self.message_log = message_log
        self.replayer = Replayer(
            message_log,
            settings.history_max_replay,
            bounds=Bounds(
                settings.replay_max_streams,
                settings.replay_max_messages,
                settings.replay_max_bytes,
            ),
        )
        self.sends = sends or SendLedger(
            registry.table, ttl_seconds=settings.idempotency_ttl_seconds
        )
        self.presence = presence or Presence(
            registry, message_log, settings.presence_max_members, settings.presence_max_list
        )
        self.limits = limits if limits is not None else Limits(registry.table, settings)
        self._devices: Devices | None = None  # the /me/devices routes' (built on first use)
        # Permissions: namespaces, capabilities and the authorizer (access.py).
        self.access = Access(
            settings.namespaces or load_namespaces(None),
            authorizer,
            settings.auth_mode,
            settings.admin_role,
            clock=registry.now,
        )
        # Writes a handler starts beside its fan-out and waits for before it answers.
        self._side = ThreadPoolExecutor(max_workers=4, thread_name_prefix="side")
        # Whether a room's sends may, must or must not be ephemeral: the namespace's
        # ``ephemeral`` option, unless a caller gives its own rule.
        self.ephemeral_rule: RuleFor = ephemeral_rule or self._namespace_ephemeral
        self.departures = Departures(
            self.presence,
            broadcaster,
            registry,
            workers=settings.fanout_workers,
            # A namespace with presence off logs and sends no presence events at all.
            presence_on=lambda room: self.access.namespace(room).presence,
            events=self.events,
        )
        # Which room events a namespace sends to the bus: its ``events`` option.
        self.events.emits = lambda room, kind: kind in self.access.namespace(room).events

    def _namespace_ephemeral(self, scope: str, room: str | None) -> EphemeralRule:
        return EphemeralRule(self.access.ephemeral_option(scope, room).value)

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
            connected_at = event.connected_at or protocol.now_ms()
            claims = self._slot_claims(identity.user_id, record)
            if claims == []:
                record.update(outcome="too_many_connections", status=429)
                return HttpResult(429, {"message": self.limits.too_many_connections})
            candidates: list[SlotClaim | None] = [None] if claims is None else list(claims)
            try:
                for claim in candidates:
                    try:
                        conn = self.registry.register(
                            event.connection_id,
                            identity.user_id,
                            connected_at,
                            endpoint=event.endpoint,
                            role=identity.role,
                            token_expires_at=identity.expires_at,
                            info=identity.info,
                            capabilities=identity.capabilities,
                            claims=identity.claims,
                            slot=None
                            if claim is None
                            else partial(claim.op, event.connection_id, now_ms=connected_at),
                            slot_number=None if claim is None else claim.slot,
                        )
                        break
                    except ItemConflict:  # another handshake took this slot: the next one
                        continue
                else:
                    record.update(outcome="too_many_connections", status=429)
                    return HttpResult(429, {"message": self.limits.too_many_connections})
            except DuplicateConnection:
                record.update(outcome="duplicate", status=409)
                return HttpResult(409, {"message": "connection already registered"})
            except Exception as exc:  # noqa: BLE001 - a refused handshake, never a crash
                error = classify(exc)
                record.update(outcome="registry_error", status=500, error=error.detail)
                return HttpResult(500, {"message": "could not register the connection"})
            if identity.auto_join:
                self._auto_join(conn, identity.auto_join, record)
            # The handshake waits for this handler: one PutEvents call (a few ms) when events
            # are on; the connection has no frames to delay yet.
            self.events.connection_opened(event.connection_id, identity.user_id, connected_at)
            flush_quietly(self.events, record)
            return HttpResult(200)

    def _slot_claims(self, user_id: str, record: dict[str, Any]) -> list[SlotClaim] | None:
        """The per-user connection slots this handshake may claim (limits.py; [] at the cap).
        None: DynamoDB could not say, and the handshake registers without a slot (fails open
        like every limit; such a connection does not count against the cap)."""
        try:
            return self.limits.slot_claims(user_id)
        except Exception as exc:  # noqa: BLE001 - fail open, as above
            record["limitError"] = classify(exc).detail
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
                record["existed"] = self.forget(
                    event.connection_id, record, ClosedBy.DISCONNECT, event.disconnect_status
                )
            except Exception as exc:  # noqa: BLE001 - $disconnect's answer is ignored anyway
                # TTL reaps what we could not delete, and every read filters expired items.
                record.update(outcome="registry_error", error=classify(exc).detail)
            flush_quietly(self.events, record)
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
            # A leave costs more: join/leave toggles announce to the whole room (limits.py).
            cost = self.settings.leave_frame_cost if isinstance(command, protocol.Leave) else 1
            verdict = self.limits.take_frame(event.connection_id, cost)
            if verdict.error:
                record["rateLimitError"] = verdict.error  # let through: limits fail open
            if not verdict.allowed:
                record.update(outcome="rate_limited", retryAfterMs=verdict.retry_after_ms)
                self._reply(event, verdict.frame(command.ref), record)
                flush_quietly(self.events, record)  # the reply may have pruned this connection
                return HttpResult(200)
            if isinstance(command, protocol.ProtocolError):
                record.update(outcome="rejected", code=command.code)
                self._reply(event, command.frame(), record)
                flush_quietly(self.events, record)
                return HttpResult(200)
            try:
                frame = self._dispatch(event, command, record, verdict)
            except AlreadySent as exc:  # a retried send: the original's ack, nothing sent
                record["outcome"] = "AlreadySent"
                frame = exc.frame(command.ref)
            except Exception as exc:  # noqa: BLE001 - the client gets a frame, the log the cause
                error = classify(exc)
                if error.outcome is not None:
                    record["outcome"] = error.outcome
                if error.detail is not None:
                    record["error"] = error.detail
                if error.outcome == "internal_error":
                    _logger.exception("unhandled error in message handler")
                frame = error.frame(command.ref)
            if frame is not None:
                self._reply(event, frame, record)
            # After the fan-out and the reply: nobody connected waits for EventBridge.
            flush_quietly(self.events, record)
            return HttpResult(200)

    def _sender(self, connection_id: str, verdict: Verdict) -> ConnectionRecord | None:
        """The frame's sender: the item the rate limit's write returned, or (when the limit
        could not answer) a GetItem."""
        if verdict.known:
            return record_of(connection_id, verdict.connection, self.registry.now())
        return self.registry.get(connection_id)

    def _dispatch(
        self,
        event: WsEvent,
        command: protocol.Command,
        record: dict[str, Any],
        verdict: Verdict,
    ) -> Frame | None:
        """One command's reply frame. Every command but ping acts for a registered connection;
        a send's ``PayloadTooLarge`` and registry errors are left to ``on_message``."""
        # Without auth there is no token to expire: a ping needs no registry read then.
        if isinstance(command, protocol.Ping) and self.settings.auth_mode == "none":
            return protocol.pong_frame(command.ref)
        conn = self._sender(event.connection_id, verdict)
        if conn is not None and conn.token_expired(self.registry.now()):
            self._expire(event, conn, command, record)
            return None
        if conn is not None and conn.pending_enters:
            self._announce_pending(conn, record)
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
                return self._history(conn, command, record)
            case protocol.Members():
                if command.room not in conn.rooms:
                    return protocol.error_frame(
                        "forbidden", f"join {command.room!r} to see its members", command.ref
                    )
                self._permit(conn, command.room, Operation.PRESENCE)
                roster = self.presence.members(command.room, command.cursor)
                return protocol.members_frame(command.ref, roster.as_dict())
            case protocol.Authorize():
                return self._authorize(conn, command, record)
            case protocol.Ping():  # handled above; here for exhaustiveness
                return protocol.pong_frame(command.ref)
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
        # Its own code (it was ``forbidden``): the client knows to refresh, not to give up.
        frame = TokenExpired().frame(command.ref)
        self._reply(event, frame, record)  # before the close: a closed socket gets nothing
        # Forgotten before the close: the close's own $disconnect then finds nothing, so the
        # one "Connection Closed" event says why (expired), whichever handler runs first.
        self.forget(conn.connection_id, reason=ClosedBy.EXPIRED)
        record["close"] = self.gateway.close(conn.connection_id, event.endpoint).value

    def forget(
        self,
        connection_id: str,
        record: dict[str, Any] | None = None,
        reason: ClosedBy = ClosedBy.DISCONNECT,
        close_code: int | None = None,
    ) -> bool:
        """Remove a connection and announce the rooms its user left with it: ``$disconnect``,
        a kick and an expired token come here (``reason``). True if it existed; only then is
        its "Connection Closed" event emitted. Registry errors raise."""
        removal = self.presence.removal(connection_id)
        if removal is None:
            return False
        if removal.closed_by is not None:  # a kick or an expiry closed it (``mark_closing``)
            reason = ClosedBy(removal.closed_by)
        self.events.connection_closed(
            connection_id, removal.user_id, removal.connected_at, reason, close_code
        )
        settled = self.departures.settle((), removal.leaves)
        if record is not None:
            record.update(settled.as_dict())
        return True

    def announce(self, *announcements: Announcement | None) -> Settled:
        """Announce what presence returned (None: nothing to announce), then settle the
        connections those announcements found gone."""
        return self.departures.settle((), [a for a in announcements if a is not None])

    def _join(self, conn: ConnectionRecord, command: protocol.Join) -> Frame:
        if command.room not in conn.rooms:
            return self._join_room(conn, command)
        return protocol.ack_frame(command.ref, 0, 0, room=command.room, joined=True)

    # --- permissions (access.py) ---------------------------------------------------------

    def _join_room(self, conn: ConnectionRecord, command: protocol.Join) -> Frame:
        """A join of a room new to the connection: the namespace's rule, the caps, then the
        membership (raises PermissionRefused / Unavailable through ``classify``)."""
        lookalike = self.access.namespaces.lookalike(command.room)
        if lookalike is not None:
            raise BadRequest(
                f"room names are case-sensitive: rooms of namespace {lookalike!r} "
                f"start with {lookalike + ':'!r}"
            )
        limit = self.settings.max_rooms_per_connection
        if len(conn.rooms) >= limit:
            raise Forbidden(f"at most {limit} rooms per connection")
        checked = self.access.check(conn, command.room, Operation.JOIN)
        refusal = self.limits.room_refusal(conn, command.room) or self._room_full(
            conn, command.room
        )
        if refusal is not None:
            raise Forbidden(refusal)
        # The others hear of the enter before the joiner's ack: a client that sends on its
        # ack must not see its message logged ahead of its own enter (the e2e presence and
        # resume tests hold the room's log to that order). Whether the room is small enough
        # for events is read beside the membership's writes (an enter needs it; a user already
        # present wastes one small Query).
        sizing = self._side.submit(self.presence.small_with, command.room, conn.user_id)
        entered = self._enter(conn, command.room, checked.grant)
        if entered is not None:
            entered = replace(entered, small=_result_or_none(sizing))
        self.announce(entered)
        return protocol.ack_frame(command.ref, 0, 0, room=command.room, joined=True)

    def _enter(
        self, conn: ConnectionRecord, room: str, grant: Grant | None, cache: bool = True
    ) -> Announcement | None:
        """Make ``conn`` a member of ``room`` whose join was allowed: the membership (quiet if
        it may not see presence; where a ``since: joined`` member's history starts) and, with
        ``cache``, the authorizer's answer cached. The enter to announce, if the user entered."""
        namespace = self.access.namespace(room)
        after = None
        if namespace.history and namespace.history_since is HistorySince.JOINED:
            after, _ = self.message_log.last_seq(protocol.stream_name(Scope.ROOM, room))
        if grant is not None and cache:
            self.registry.set_grant(conn, room, grant)
        quiet = not self.access.sees_presence(conn, room, grant)
        limit = self.settings.max_rooms_per_connection
        try:
            return self.presence.join(conn, room, quiet=quiet, after=after, max_rooms=limit)
        except RoomLimitReached as exc:  # parallel joins: the write's condition held
            raise Forbidden(str(exc)) from None

    def _room_full(self, conn: ConnectionRecord, room: str) -> str | None:
        """The namespace's ``maxMembers``: users present at once (a user already there may
        add connections)."""
        cap = self.access.namespace(room).max_members
        if cap is None or self.presence.has_room_for(room, conn.user_id, cap):
            return None
        return f"room {room!r} is full ({cap} members)"

    def _permit(self, conn: ConnectionRecord, room: str, operation: Operation) -> None:
        """Check a member's operation (raises PermissionDenied / AuthorizerUnavailable). A
        member whose cached authorizer answer ran out and whose authorizer now refuses is
        taken out of the room with a ``removed`` frame (reason ``expired``)."""
        try:
            checked = self.access.check(conn, room, operation)
        except PermissionDenied:
            cached = conn.grant(room)
            # Only when the authorizer was asked because its answer ran out and now refuses:
            # a fresh answer that lacks this operation refuses the operation, not the room.
            if cached is not None and not cached.fresh(self.registry.now()) and room in conn.rooms:
                self.registry.drop_grant(conn, room)
                self._remove_from_room(conn, room, "expired")
            raise
        if checked.grant is not None:
            self.registry.set_grant(conn, room, checked.grant)

    def _remove_from_room(self, conn: ConnectionRecord, room: str, reason: str) -> None:
        """Leave ``room`` for ``conn`` (the room hears a presence leave if it was the user's
        last connection there) and tell the connection why with a ``removed`` frame."""
        try:
            leave = self.presence.leave(conn, room)
        except NotConnected:
            return
        frame = protocol.encode(protocol.removed_frame(room, reason))
        self.gateway.post(conn.connection_id, frame, conn.endpoint)
        self.announce(leave)

    def _auto_join(
        self, conn: ConnectionRecord, rooms: tuple[str, ...], record: dict[str, Any]
    ) -> None:
        """The token's ``autoJoin`` rooms, joined at $connect: each checked as a ``join``
        would be (authorizer calls side by side, so the handshake waits for the slowest one
        only). $connect cannot post (API Gateway gives it no @connections: the socket is not
        open yet), so only the memberships are written; the enters are announced by the
        connection's first frame (``pendingEnters``). A room refused or failing is skipped:
        the connection is registered, the handshake goes on."""
        rooms = rooms[: self.settings.max_rooms_per_connection]

        def check(room: str) -> Checked | str:
            try:
                if self.access.namespaces.lookalike(room) is not None:
                    return "bad_request"
                return self.access.check(conn, room, Operation.JOIN)
            except (PermissionDenied, AuthorizerUnavailable) as exc:
                return classify(exc).code

        with ThreadPoolExecutor(max_workers=max(1, len(rooms))) as pool:
            results = list(pool.map(check, rooms))
        entered: list[str] = []
        refused: dict[str, str] = {}
        grants: dict[str, Grant] = {}
        for room, result in zip(rooms, results, strict=True):
            if isinstance(result, str):
                refused[room] = result
                continue
            try:
                if self._room_full(conn, room) is not None:
                    refused[room] = "full"
                    continue
                if self._enter(conn, room, result.grant, cache=False) is not None:
                    entered.append(room)
                if result.grant is not None:
                    grants[room] = result.grant
            except Exception as exc:  # noqa: BLE001 - one room must not fail the handshake
                refused[room] = classify(exc).code
        if grants:  # one write for every room's answer
            self.registry.set_grants(conn, {**conn.grants, **grants})
        self.registry.set_pending_enters(conn.connection_id, entered)
        record.update(autoJoined=len(rooms) - len(refused))
        if refused:
            record["autoJoinRefused"] = refused

    def _announce_pending(self, conn: ConnectionRecord, record: dict[str, Any]) -> None:
        """The presence enters of $connect's auto-joins, announced by whichever frame of the
        connection takes them first."""
        rooms = self.registry.take_pending_enters(conn)
        self.announce(
            *(
                Announcement(room, ENTER, conn.user_id, exclude=conn.connection_id)
                for room in sorted(rooms & conn.rooms)
            )
        )
        if rooms:
            record["announcedEnters"] = len(rooms)

    def _permitted_history(self, conn: ConnectionRecord, command: protocol.History) -> Frame:
        """A history page as the room's namespace lets this member read it."""
        parsed = protocol.parse_stream(command.stream)
        if parsed is not None and parsed[0] == "room" and parsed[1] in conn.rooms:
            room = str(parsed[1])
            self._permit(conn, room, Operation.HISTORY)
            after = max(command.after, self._joined_after(conn, room))
            hidden = not self._may_see_presence(conn, room)
            return self.replayer.history(
                replace(command, after=after), conn.user_id, conn.rooms, hidden
            )
        return self.replayer.history(command, conn.user_id, conn.rooms)

    def _joined_after(self, conn: ConnectionRecord, room: str) -> int:
        """Where a ``since: joined`` member's history starts (0 elsewhere: no read)."""
        namespace = self.access.namespace(room)
        if namespace.history_since is not HistorySince.JOINED:
            return 0
        return self.registry.joined_after(room, conn.connection_id)

    def _may_see_presence(self, conn: ConnectionRecord, room: str) -> bool:
        """Whether a member may see the room's presence events (in history and replays too),
        from what it holds: an answer that would need asking counts as no."""
        return self.access.decide(conn, room, Operation.PRESENCE).allowed

    def _readable(
        self, conn: ConnectionRecord, command: protocol.Resume
    ) -> tuple[protocol.Resume, dict[str, dict[str, Any]], frozenset[str]]:
        """A resume's streams this connection may read (a room's from where a ``since:
        joined`` member's history starts), the refused ones with why, and the room streams
        to replay without their presence events."""
        allowed: list[protocol.Cursor] = []
        refused: dict[str, dict[str, Any]] = {}
        hidden: set[str] = set()
        for cursor in command.streams:
            stream = cursor.stream
            parsed = protocol.parse_stream(stream)
            if parsed is not None and parsed[0] == "room" and parsed[1] in conn.rooms:
                room = str(parsed[1])
                try:
                    self._permit(conn, room, Operation.HISTORY)
                except (PermissionDenied, AuthorizerUnavailable) as exc:
                    refused[stream] = {"after": cursor.seq, "refused": str(classify(exc))}
                    continue
                joined = self._joined_after(conn, room)
                if joined > cursor.seq:
                    cursor = replace(cursor, seq=joined)
                if not self._may_see_presence(conn, room):
                    hidden.add(stream)
            allowed.append(cursor)
        return replace(command, streams=tuple(allowed)), refused, frozenset(hidden)

    def _authorize(
        self, conn: ConnectionRecord, command: protocol.Authorize, record: dict[str, Any]
    ) -> Frame:
        """Replace the connection's token (same ``sub``): role, expiry, capabilities and
        claims. Rooms the new token no longer lets it join are left, each with a ``removed``
        frame (reason ``capability``); a room of an authorizer namespace is kept while its
        cached answer lasts, and asked about when there is none. The old token stays in
        force when the new one is refused."""
        if self.settings.auth_mode != "jwt":
            raise BadRequest("authorize needs AUTH_MODE=jwt (there is no token)")
        try:
            identity = verify_token(command.token, self.settings)
        except AuthError as exc:
            raise BadToken(str(exc)) from None
        if identity.user_id != conn.user_id:
            raise Forbidden("the token is for another user; reconnect to change user")
        self.registry.set_identity(
            conn.connection_id,
            identity.role,
            identity.expires_at,
            identity.capabilities,
            identity.claims,
        )
        renewed = replace(
            conn,
            role=identity.role,
            token_expires_at=identity.expires_at,
            capabilities=identity.capabilities,
            claims=identity.claims,
        )
        lost = []
        for room in sorted(renewed.rooms):
            try:
                checked = self.access.check(renewed, room, Operation.JOIN)
            except PermissionDenied:
                lost.append(room)
                continue
            except AuthorizerUnavailable:
                continue  # an outage evicts nobody: the room's next operation asks again
            if checked.grant is not None:
                self.registry.set_grant(renewed, room, checked.grant)
                renewed = replace(renewed, grants={**renewed.grants, room: checked.grant})
        for room in lost:
            self._remove_from_room(renewed, room, "capability")
        record.update(outcome="authorized", removedRooms=len(lost))
        expires = identity.expires_at * 1000 if identity.expires_at is not None else None
        return protocol.authorized_frame(command.ref, expires)

    def _leave(self, conn: ConnectionRecord, command: protocol.Leave) -> Frame:
        if command.room not in conn.rooms:
            return protocol.error_frame(
                "not_found", f"not a member of {command.room!r}", command.ref
            )
        self.announce(self.presence.leave(conn, command.room))
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

        reserved = self.replayer.bounds.max_messages
        limited = self._replay_refusal(conn, reserved, command.ref, record)
        if limited is not None:
            return limited
        command, refused, hidden = self._readable(conn, command)
        replayed = 0
        try:
            frame = self.replayer.resume(command, conn.user_id, conn.rooms, post, hidden)
            if frame is not None:
                replayed = sum(s.get("replayed", 0) for s in frame["streams"].values())
        finally:
            self.limits.refund_replay(conn.user_id, reserved, replayed)
        if frame is None:
            record["outcome"] = "gone_during_resume"
            record.update(self.departures.settle([conn.connection_id]).as_dict())
            return None
        frame["streams"].update(refused)
        record["replayed"] = replayed
        return frame

    def _history(
        self, conn: ConnectionRecord, command: protocol.History, record: dict[str, Any]
    ) -> Frame:
        refused = self._replay_refusal(conn, command.limit, command.ref, record)
        if refused is not None:
            return refused
        read = 0
        try:
            frame = self._permitted_history(conn, command)
            read = len(frame.get("messages", ()))
        finally:  # a refused read (permissions) gives its whole reservation back
            self.limits.refund_replay(conn.user_id, command.limit, read)
        return frame

    def _replay_refusal(
        self, conn: ConnectionRecord, reserve: int, ref: protocol.Ref, record: dict[str, Any]
    ) -> Frame | None:
        """Reserve ``reserve`` messages of the user's replay budget (limits.py); the
        ``rate_limited`` frame when it is spent, else None (fails open like the frame rate)."""
        verdict = self.limits.take_replay(conn.user_id, reserve)
        if verdict.error:
            record["replayLimitError"] = verdict.error
        if verdict.allowed:
            return None
        record.update(outcome="replay_limited", retryAfterMs=verdict.retry_after_ms)
        return verdict.frame(ref)

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
                command.body,
                record,
                command.client_msg_id,
            )
        except AlreadySent as exc:  # a retried send: the same answer, nothing sent again
            record["outcome"] = "AlreadySent"
            receipts = {"delivered": 0, "failed": 0, "gone": 0} if self.settings.dm_receipts else {}
            return protocol.dm_ack_frame(command.ref, exc.message_id, duplicate=True, **receipts)
        # Reached no connection: for the back end (a push notification), never the sender.
        self._undelivered(message, command.target_user_id, report, conn.user_id)
        if message.ephemeral:
            # Not stored: an ephemeral ack; delivery counts only with receipts on, as below.
            if not self.settings.dm_receipts:
                return protocol.ephemeral_ack_frame(command.ref, message.id)
            return _ack(command.ref, message, report)
        if not self.settings.dm_receipts:
            return protocol.dm_ack_frame(command.ref, message.id)
        continued = {"continued": report.continued} if report.continued else {}
        return protocol.dm_ack_frame(
            command.ref,
            message.id,
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
        self._permit(conn, command.room, Operation.SEND)
        message, report = self._send(
            conn, Scope.ROOM, command.room, command.body, record, command.client_msg_id
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
            conn, Scope.ALL, None, command.body, record, command.client_msg_id
        )
        return _ack(command.ref, message, report)

    def _send(
        self,
        conn: ConnectionRecord,
        scope: Scope,
        name: str | None,
        body: protocol.Body,
        record: dict[str, Any],
        client_msg_id: str | None = None,
    ) -> tuple[Message, Report]:
        """Log a client's message in its stream, then fan it out to its audience, except the
        sending connection itself. A ``client_msg_id`` used before raises ``DuplicateSend``.
        An ephemeral one (asked for, or forced by the room's rule) is not logged: no DynamoDB
        write at all; ``EphemeralRefused`` where the rule does not allow what was asked."""
        body = self._ephemeral(scope, name, body, client_msg_id)
        message = Message.of(conn.user_id, scope, body, name if scope is Scope.ROOM else None)
        if message.ephemeral:
            record["ephemeral"] = True
            return message, self._fan_out_ephemeral(scope, name, message, record, conn)
        audience = self._audience(scope, name)
        message, done = self._log(scope, name, message, record, client_msg_id)
        try:
            report = self._fan_out(scope, name, message, record, conn.connection_id, audience)
        finally:
            done()
        return message, report

    def _ephemeral(
        self, scope: Scope, name: str | None, body: protocol.Body, client_msg_id: str | None
    ) -> protocol.Body:
        """The body with ``ephemeral`` as the room's rule makes it (``EphemeralRefused``)."""
        room = name if scope is Scope.ROOM else None
        ephemeral = resolve(body.ephemeral, self.ephemeral_rule(scope.value, room), client_msg_id)
        return dataclasses.replace(body, ephemeral=ephemeral)

    def _fan_out_ephemeral(
        self,
        scope: Scope,
        name: str | None,
        message: Message,
        record: dict[str, Any],
        conn: ConnectionRecord,
    ) -> Report:
        """Fan an ephemeral message out within this invocation. It has no seq for an SQS
        continuation to re-read from the log, so recipients past the deadline are reported
        failed: ephemeral delivery is best effort by design (typing, cursors)."""
        audience = Audience.of(self.registry, scope, name)
        report = self.broadcaster.fan_out(
            audience,
            protocol.encode(message.to_frame()),
            exclude=conn.connection_id,
            scope=scope.value,
        )
        record.update(report.as_dict())
        record.update(self.departures.settle(report.gone_ids).as_dict())
        metrics.emit_report(report, scope.value, ephemeral=True, hop=0)
        return report

    def _audience(self, scope: Scope, name: str | None) -> Audience:
        """A message's audience with its first registry read already on its way: the read
        runs beside the log's writes (nothing it returns depends on them), so a send waits
        for the longer of the two, not their sum. A member who joins during those writes may
        miss the live copy; the join's resume has it, as for any join racing a send."""
        audience = Audience.of(self.registry, scope, name)
        if scope is not Scope.ALL:
            # Not a broadcast's 8 shard Queries: its read already overlaps its seconds of
            # posting, and 8 reads ahead of a log write that may fail are not worth one round
            # trip; its queries start when the fan-out does (and hand on unread if it stops).
            audience.start()
        return audience

    def _fan_out(
        self,
        scope: Scope,
        name: str | None,
        message: Message,
        record: dict[str, Any],
        exclude: str | None = None,
        audience: Audience | None = None,
    ) -> Report:
        """Fan a logged message out to its audience (read now unless given); then the
        continuation policy (when there is a queue) takes what the deadline left, and the
        connections found gone are removed and their leaves announced. One EMF metrics line."""
        audience = audience or Audience.of(self.registry, scope, name)
        report = self.broadcaster.fan_out(
            audience, protocol.encode(message.to_frame()), exclude=exclude, scope=scope.value
        )
        if self.continuation is not None and report.stopped_early:
            report = self.continuation.hand_off(report, audience, message, exclude, scope.value)
        record.update(report.as_dict())
        record.update(self.departures.settle(report.gone_ids).as_dict())
        stream, seq = message.position
        metrics.emit_report(report, scope.value, stream=stream, seq=seq, hop=0)
        if scope is Scope.ROOM:
            self.events.published(message)  # when the room's namespace publishes
        return report

    def _undelivered(
        self, message: Message, target: str | None, report: Report, sender: str | None = None
    ) -> None:
        """A direct message that reached no connection: none registered, or every post
        answered 410. Not for a user writing to themselves from their only connection (that
        connection is there; it is just not sent its own message)."""
        if target is None or target == sender or message.ephemeral:
            return  # an ephemeral send (typing, a cursor) is for whoever is there, if anyone
        if report.recipients == 0:
            self.events.undelivered(message, target, "no_connections")
        elif report.gone == report.recipients:
            self.events.undelivered(message, target, "gone")

    def continue_fan_out(self, records: list[tuple[str, str]]) -> dict[str, Any]:
        """The SQS continuation handler: run each job (``(messageId, body)``), then remove the
        connections each found gone; Lambda's partial-batch response. Without a queue every
        job is failed back to SQS. Where the event source mapping cannot report partial batch
        failures (``settings.continuation_partial_batch`` false: ``chalice deploy``), a batch
        with a failed job raises ``errors.ContinuationBatchFailed`` instead of returning."""
        if self.continuation is None:
            _logger.error("no continuation queue is configured: %d jobs left to SQS", len(records))
            result: dict[str, Any] = {
                "batchItemFailures": [{"itemIdentifier": mid} for mid, _ in records]
            }
        else:
            try:
                result = self.continuation.run_batch(
                    records, after=lambda report: self.departures.settle(report.gone_ids)
                )
            finally:
                flush_quietly(self.events)  # the prunes' Connection Closed events
        failed = result.get("batchItemFailures") or []
        if failed and not self.settings.continuation_partial_batch:
            raise ContinuationBatchFailed(len(failed), len(records))
        return result

    def _log(
        self,
        scope: Scope,
        name: str | None,
        message: Message,
        record: dict[str, Any],
        client_msg_id: str | None = None,
    ) -> tuple[Message, Callable[[], None]]:
        """Store ``message`` in its stream before anyone gets it; the message as logged, with
        ``stream`` and ``seq``, and what to call once it is fanned out (it waits for the send
        record's update). Raises ``LogWriteError``: then nothing may be sent; with a
        ``client_msg_id`` used before, ``DuplicateSend`` (idempotency.py): nothing either."""
        stream = protocol.stream_name(scope, name)
        claim: Claim | None = None
        if client_msg_id is not None:
            digest_source = message.body.digest_source()
            claim = self.sends.claim(message.sender, client_msg_id, stream, digest_source)
        try:
            logged = self.message_log.append(stream, message.to_frame())
        except Exception:
            if claim is not None:
                self.sends.release(claim)  # nothing was sent: a retry may send
            raise
        record.update(stream=logged["stream"], seq=logged["seq"])
        if claim is None:
            logged_message = message.logged(
                str(logged["stream"]), int(logged["seq"]), str(logged["epoch"])
            )
            return logged_message, _nothing
        # The claim's id and seq are written beside the fan-out, not before it: the message
        # is logged, so it goes out either way; the handler waits for the write before it
        # answers (``done``), so a repeat after the ack always finds the original's seq.
        completing = self._side.submit(self.sends.complete, claim, logged)

        def done() -> None:
            try:
                completing.result()
            except Exception as exc:  # noqa: BLE001 - logged: sent all the same
                # A repeat meets a pending claim ("retry") until it is stale.
                record["idempotency"] = classify(exc).detail

        return message.logged(str(logged["stream"]), int(logged["seq"]), str(logged["epoch"])), done

    def _may_broadcast(self, conn: ConnectionRecord) -> bool:
        return self.settings.auth_mode == "none" or conn.role == self.settings.admin_role

    def _reply(self, event: WsEvent, frame: dict[str, Any], record: dict[str, Any]) -> None:
        outcome = self.gateway.post(event.connection_id, protocol.encode(frame), event.endpoint)
        if outcome is not Outcome.DELIVERED:
            # The sender never gets this ack or error (retries ran out): the log says so.
            record["reply"] = outcome.value
        if outcome is Outcome.GONE:
            record.update(self.departures.settle([event.connection_id]).as_dict())

    # --- HTTP API -------------------------------------------------------------------------

    def authorize_http(self, authorization: str | None) -> Identity:
        return require_admin_bearer(authorization, self.settings)

    def authorize_user(self, authorization: str | None, local_user: str | None) -> Identity:
        """The ``/me`` routes: the user's own token (any role); ``?userId=`` without auth."""
        return require_user_bearer(authorization, self.settings, local_user)

    @property
    def devices(self) -> Devices:
        if self._devices is None:
            self._devices = Devices(self.registry.table, self.settings.device_ttl_seconds)
        return self._devices

    def register_device(self, caller: Identity, body: Any) -> dict[str, Any]:
        """POST /me/devices: store (or refresh) the caller's push device token."""
        platform, token = parse_registration(body)
        return self.devices.register(caller.user_id, platform, token).public()

    def list_devices(self, caller: Identity) -> dict[str, Any]:
        """GET /me/devices: the caller's registered devices (never the tokens)."""
        return {"devices": [d.public() for d in self.devices.for_user(caller.user_id)]}

    def remove_device(self, caller: Identity, device_id: str) -> None:
        """DELETE /me/devices/{deviceId}: forget one of the caller's devices (idempotent)."""
        self.devices.remove(caller.user_id, device_id)

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
            content = protocol.parse_body(body, self.settings.max_text_chars, ephemeral_ok=False)
        except ValueError as exc:
            raise BadRequest(str(exc.args[0])) from None
        client_msg_id = body.get("clientMsgId")
        if client_msg_id is not None and not protocol.valid_client_msg_id(client_msg_id):
            raise BadRequest("clientMsgId must be 1-64 characters of A-Z a-z 0-9 _ . : -")
        _check_path_name(scope, name)
        room = name if scope is Scope.ROOM else None
        message = Message.of(sender.user_id, scope, content, room)
        with log.event_log(event="http_push", scope=scope.value) as record:
            audience = self._audience(scope, name)
            try:
                message, done = self._log(scope, name, message, record, client_msg_id)
            except AlreadySent as exc:  # a retried push: the original answer, nothing sent
                record["outcome"] = "AlreadySent"
                return {**exc.answer(), "recipients": 0}
            try:
                report = self._fan_out(scope, name, message, record, audience=audience)
                if scope is Scope.USER:
                    self._undelivered(message, name, report)
            finally:
                done()
                # The caller waits for this answer, connected clients do not: flush here
                # (also when the fan-out failed: what it pruned was removed all the same).
                flush_quietly(self.events, record)
        stream, seq = message.position
        return {
            "id": message.id,
            "stream": stream,
            "seq": seq,
            "epoch": message.epoch,
            **report.as_dict(),
        }

    def history(self, scope: Scope | str, name: str, query: Mapping[str, str]) -> dict[str, Any]:
        """GET /rooms/{room}/messages and /users/{userId}/messages (admin: any stream), with
        the ``history`` frame's parameters: ``after``, ``before``, ``latest``, ``limit``."""
        scope = Scope(scope)
        _check_path_name(scope, name)
        command = _history_query(protocol.stream_name(scope, name), query)
        page = self.replayer.page(command)
        return {"stream": command.stream, "next": page.pop("next_seq"), **page}

    def members(self, room: str, cursor: str | None = None) -> dict[str, Any]:
        """GET /rooms/{room}/members?cursor=: who is present, one page (admin: any room)."""
        _check_path_name(Scope.ROOM, room)
        if cursor is not None and not protocol.valid_user_id(cursor):
            raise BadRequest("cursor must be the next of a members answer")
        return self.presence.members(room, cursor).as_dict()

    def revoke(self, room: str, user_id: str) -> dict[str, Any]:
        """DELETE /rooms/{room}/members/{userId}: take every connection of the user out of the
        room; each gets a ``removed`` frame (reason ``revoked``) and the room hears the user's
        presence leave. Cached authorizer answers for the room go too. Whether the user may
        join again is the namespace's to say (their token, or the authorizer)."""
        _check_path_name(Scope.ROOM, room)
        _check_path_name(Scope.USER, user_id)
        removed = 0
        with log.event_log(event="revoke", room=room, userId=user_id) as record:
            for target in self.registry.room_members(room):
                if target.user_id != user_id:
                    continue
                conn = self.registry.get(target.connection_id)
                if conn is None or room not in conn.rooms:
                    continue
                if conn.grant(room) is not None:
                    self.registry.drop_grant(conn, room)
                self._remove_from_room(conn, room, "revoked")
                removed += 1
            record["removed"] = removed
        return {"room": room, "userId": user_id, "removed": removed}

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
        # Marked, then closed, then forgotten: a frame already in flight still finds its
        # connection (a client sending at that moment gets its answer, not "not registered"),
        # and whichever removal runs first, this one or the $disconnect the close causes,
        # reports "kicked".
        if conn is not None:
            self.registry.mark_closing(connection_id, ClosedBy.KICKED.value)
        outcome = self.gateway.close(connection_id, conn.endpoint if conn else None)
        try:
            self.forget(connection_id, reason=ClosedBy.KICKED)
        finally:
            flush_quietly(self.events)
        if outcome is Outcome.GONE and conn is None:
            raise NotFound(f"connection {connection_id} not found")
        if outcome not in (Outcome.DELIVERED, Outcome.GONE):
            raise RuntimeError(f"closing the connection failed: {outcome.value}")


def _result_or_none(future: Future[bool]) -> bool | None:
    """A side read's answer; None when it failed (the caller reads again)."""
    try:
        return future.result()
    except Exception:  # noqa: BLE001 - the announcement reads the size itself then
        return None


def _nothing() -> None:
    """Nothing left to wait for (a send without a ``clientMsgId``)."""


def _ack(ref: protocol.Ref, message: Message, report: Report) -> Frame:
    # How many recipients a continuation took over, only when one did.
    continued = {"continued": report.continued} if report.continued else {}
    if message.ephemeral:
        # Not logged: no stream, seq or epoch to name it by.
        return protocol.ephemeral_ack_frame(
            ref, message.id, delivered=report.delivered, failed=report.failed, gone=report.gone
        )
    stream, seq = message.position
    return protocol.ack_frame(
        ref,
        report.delivered,
        report.failed,
        report.gone,
        id=message.id,
        stream=stream,
        seq=seq,
        epoch=message.epoch,
        **continued,
    )


def _check_path_name(scope: Scope, name: str | None) -> None:
    """The user id or room an HTTP path names, as the protocol accepts them (400 otherwise)."""
    if scope is Scope.USER and not protocol.valid_user_id(name):
        raise BadRequest("userId must be 1-128 characters of A-Z a-z 0-9 _ . : @ | + -")
    if scope is Scope.ROOM and not protocol.valid_room(name):
        raise BadRequest("room must be 1-64 characters of A-Z a-z 0-9 _ . : -")


PAGE_PARAMS = ("after", "before", "latest", "limit")


def _history_query(stream: str, query: Mapping[str, str]) -> protocol.History:
    """An HTTP history request as the ``history`` frame it mirrors (400 for bad values)."""
    limit = _query_int(
        query.get("limit"), "limit", protocol.HISTORY_DEFAULT_LIMIT, 1, protocol.HISTORY_MAX_LIMIT
    )
    latest = query.get("latest") in ("true", "1")
    if query.get("latest") not in (None, "", "true", "false", "1", "0"):
        raise BadRequest("latest must be true or false")
    given = [k for k in ("after", "before") if query.get(k) not in (None, "")]
    if len(given) + latest > 1:
        raise BadRequest("give one of after, before and latest")
    after = _query_int(query.get("after"), "after", 0, 0, protocol.MAX_SEQ)
    before = None
    if query.get("before") not in (None, ""):
        before = _query_int(query.get("before"), "before", 0, 0, protocol.MAX_SEQ)
    return protocol.History(stream, after, limit, None, before, latest)


def page_params(query: Mapping[str, str] | None) -> dict[str, str]:
    """A history route's ``after``, ``before``, ``latest`` and ``limit``; any other query
    parameter is a 400 (a misspelled ``after`` must not silently answer from the start of the
    stream)."""
    query = dict(query or {})
    reject_unknown_query(query, PAGE_PARAMS)
    return query


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


__all__ = [
    "PAGE_PARAMS",
    "BadRequest",
    "HttpResult",
    "NotFound",
    "NotRegistered",
    "Scope",
    "Switchboard",
]
