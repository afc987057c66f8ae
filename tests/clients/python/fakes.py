"""A fake switchboard for the client's state machine: sockets are queues, the server answers
whoami, join, leave, members, resume, history, ping and sends from an in-memory log (presence
events take seqs in it like messages; a repeated clientMsgId gets the original ack, or
``rate_limited`` while ``in_progress`` says so), and tests steer it (close a socket, hold acks,
mute pongs, refuse connections)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from switchboard_client import ConnectionLost


class FakeSocket:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed = False

    async def send(self, data: str) -> None:
        if self.closed:
            raise ConnectionLost("closed")
        frame = json.loads(data)
        self.sent.append(frame)
        self.server.handle(self, frame)

    async def recv(self) -> str:
        item = await self.inbox.get()
        if item is None:
            raise ConnectionLost("closed")
        return item

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.inbox.put_nowait(None)

    def push(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            self.inbox.put_nowait(json.dumps(frame))

    def actions(self) -> list[str]:
        return [str(f.get("action")) for f in self.sent]


class FakeServer:
    def __init__(self, user: str = "u_1") -> None:
        self.user = user
        self.sockets: list[FakeSocket] = []
        self.log: dict[str, list[dict[str, Any]]] = {}
        self.refuse = 0  # connection attempts to refuse
        self.hold_acks = False  # sends are logged but never answered
        self.mute_pongs = False
        self.errors: dict[str, str] = {}  # action -> error code to answer with
        self.replay_limit = 500
        self.members: dict[str, list[dict[str, Any]]] = {}  # room -> users; absent: forbidden
        self.in_progress = 0  # repeats of a clientMsgId to answer "still in progress"
        self.acks: dict[str, dict[str, Any]] = {}  # clientMsgId -> the original ack
        self.connected = asyncio.Event()
        self.statuses: list[tuple[int, str]] = []  # handshakes to refuse with (status, body)
        self.urls: list[str] = []
        self.expired: list[str] = []  # actions to answer token_expired once each
        self.epochs: dict[str, str] = {}  # stream -> its epoch (reset when a resume differs)

    async def connect(self, url: str) -> FakeSocket:
        self.urls.append(url)
        if self.statuses:
            from websockets.datastructures import Headers
            from websockets.exceptions import InvalidStatus
            from websockets.http11 import Response

            status, body = self.statuses.pop(0)
            raise InvalidStatus(Response(status, "Refused", Headers(), body.encode()))
        if self.refuse > 0:
            self.refuse -= 1
            raise OSError("connection refused")
        socket = FakeSocket(self)
        self.sockets.append(socket)
        self.connected.set()
        return socket

    @property
    def socket(self) -> FakeSocket:
        return self.sockets[-1]

    def append(self, stream: str, text: str) -> dict[str, Any]:
        messages = self.log.setdefault(stream, [])
        seq = len(messages) + 1
        frame = {"type": "message", "id": f"{stream}-{seq}", "from": "x", "scope": "room"}
        frame.update(text=text, stream=stream, seq=seq, sentAt=0)
        if stream in self.epochs:
            frame["epoch"] = self.epochs[stream]
        messages.append(frame)
        return frame

    def presence(self, stream: str, event: str, user: str) -> dict[str, Any]:
        """Log a presence event in a room's stream: it takes the next seq, like a message."""
        entries = self.log.setdefault(stream, [])
        frame = {"type": "presence", "room": stream.removeprefix("room:"), "event": event}
        frame.update(userId=user, stream=stream, seq=len(entries) + 1)
        entries.append(frame)
        return frame

    def handle(self, socket: FakeSocket, frame: dict[str, Any]) -> None:
        action, ref = frame.get("action"), frame.get("ref")
        if action in self.errors:
            socket.push({"type": "error", "code": self.errors[action], "message": "no", "ref": ref})
        elif action in self.expired:
            self.expired.remove(action)
            socket.push({"type": "error", "code": "token_expired", "message": "exp", "ref": ref})
        elif action == "authorize":
            socket.push({"type": "authorized", "ref": ref, "expiresAt": 9_999_999_999_000})
        elif action == "whoami":
            cid = f"c{len(self.sockets)}"
            socket.push({"type": "identity", "connectionId": cid, "userId": self.user, "ref": ref})
        elif action in ("join", "leave"):
            socket.push({"type": "ack", "ref": ref, "room": frame["room"]})
        elif action == "ping":
            if not self.mute_pongs:
                socket.push({"type": "pong", "ref": ref})
        elif action == "resume":
            streams = {}
            for stream, cursor in frame["streams"].items():
                after = cursor["seq"] if isinstance(cursor, dict) else cursor
                epoch = self.epochs.get(stream)
                if isinstance(cursor, dict) and epoch is not None and cursor["epoch"] != epoch:
                    last = len(self.log.get(stream, []))
                    streams[stream] = {"reset": True, "epoch": epoch, "after": 0, "last": last,
                                       "replayed": 0, "truncated": last > 0, "next": 1}  # fmt: skip
                    continue
                page = self.log.get(stream, [])[after : after + self.replay_limit]
                for message in page:
                    socket.push({**message, "replayed": True})
                last = len(self.log.get(stream, []))
                summary: dict[str, Any] = {"after": after, "last": last, "replayed": len(page)}
                summary["truncated"] = after + len(page) < last
                if summary["truncated"]:
                    summary["next"] = after + len(page) + 1
                streams[stream] = summary
            socket.push({"type": "resumed", "ref": ref, "streams": streams})
        elif action == "history":
            stream, after, limit = frame["stream"], frame["after"], frame["limit"]
            log = self.log.get(stream, [])
            page = log[after : after + limit]
            nxt = after + len(page) + 1 if after + len(page) < len(log) else None
            socket.push({"type": "history", "ref": ref, "stream": stream, "messages": page,
                         "next": nxt, "last": len(log)})  # fmt: skip
        elif action == "members":
            users = self.members.get(frame["room"])
            if users is None:
                socket.push({"type": "error", "code": "forbidden", "message": "join", "ref": ref})
            else:
                socket.push({"type": "members", "ref": ref, "room": frame["room"],
                             "count": len(users), "users": users, "truncated": False})  # fmt: skip
        elif (
            action in ("sendRoom", "sendMessage", "broadcastAll")
            and frame.get("clientMsgId") in self.acks
        ):
            if self.in_progress > 0:
                self.in_progress -= 1
                socket.push({"type": "error", "code": "rate_limited", "ref": ref,
                             "message": "still in progress"})  # fmt: skip
            else:
                socket.push({**self.acks[frame["clientMsgId"]], "ref": ref, "duplicate": True})
        elif action in ("sendRoom", "sendMessage", "broadcastAll"):
            stream = {
                "sendRoom": f"room:{frame.get('room')}",
                "sendMessage": f"user:{frame.get('targetUserId')}",
            }.get(action, "all")
            if frame.get("ephemeral"):  # not logged: an ack without stream/seq
                socket.push({"type": "ack", "ref": ref, "ephemeral": True, "delivered": 0})
                return
            message = self.append(stream, frame.get("text", ""))
            for key in ("event", "data"):
                if key in frame:
                    message[key] = frame[key]
            ack = {"type": "ack", "ref": ref, "stream": stream, "seq": message["seq"],
                   "clientMsgId": frame.get("clientMsgId")}  # fmt: skip
            if frame.get("clientMsgId"):
                self.acks[frame["clientMsgId"]] = ack
            if not self.hold_acks:
                socket.push(ack)
