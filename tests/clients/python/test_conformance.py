"""Runs the shared conformance cases (``clients/conformance/*.json``: server frames in,
app-visible events out) against the Python client; ``clients/js/test/conformance.test.js`` runs
the same files against the JavaScript client, so the two cannot drift. Format:
``clients/conformance/README.md``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from switchboard_client import (
    ConnectionLost,
    Gap,
    MemoryStore,
    Message,
    Presence,
    Reset,
    State,
    SwitchboardClient,
)

CASES = Path(__file__).resolve().parents[3] / "clients" / "conformance"
# The JS client's method names -> the Python client's.
CALLS = {
    "join": "join",
    "leave": "leave",
    "sendRoom": "send_room",
    "sendMessage": "send_message",
    "broadcast": "broadcast",
    "publish": "publish",
}
pytestmark = pytest.mark.timeout(30)


class Scripted:
    """A transport the case's steps drive: what the client sends is recorded, frames are pushed."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()

    async def send(self, data: str) -> None:
        self.sent.append(json.loads(data))

    async def recv(self) -> str:
        item = await self.inbox.get()
        if item is None:
            raise ConnectionLost("closed")
        return item

    async def close(self) -> None:
        self.inbox.put_nowait(None)

    def push(self, frame: dict[str, Any]) -> None:
        self.inbox.put_nowait(json.dumps(frame))

    def last(self, action: str) -> dict[str, Any] | None:
        return next((f for f in reversed(self.sent) if f.get("action") == action), None)


async def settle() -> None:
    """Let the client read and act on what was pushed (no timers are involved)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def wait_sent(transport: Scripted, action: str, skip: set[int]) -> dict[str, Any]:
    for _ in range(500):
        for frame in transport.sent:
            if frame.get("action") == action and frame["ref"] not in skip:
                return frame
        await asyncio.sleep(0.002)
    raise AssertionError(f"no unanswered {action} to reply to: {transport.sent}")


def project(value: object) -> dict[str, Any]:
    if isinstance(value, Message):
        return {
            "type": "message",
            "stream": value.stream,
            "seq": value.seq if value.seq > 0 else None,
            "sender": value.sender,
            "text": value.raw.get("text"),
            "event": value.event,
            "data": value.data,
            "echo": value.echo,
        }
    if isinstance(value, Presence):
        return {"type": "presence", "stream": value.stream, "seq": value.seq,
                "room": value.room, "event": value.event, "userId": value.user_id}  # fmt: skip
    if isinstance(value, Reset):
        return {"type": "reset", "stream": value.stream, "epoch": value.epoch,
                "previousEpoch": value.previous_epoch}  # fmt: skip
    if isinstance(value, Gap):
        return {"type": "gap", "stream": value.stream, "from": value.from_seq, "to": value.to_seq}
    assert isinstance(value, dict)
    return {"type": "removed", "room": value.get("room"), "reason": value.get("reason")}


def contains(actual: Any, expected: dict[str, Any], path: str = "") -> None:
    for key, value in expected.items():
        if isinstance(value, dict):
            contains(actual.get(key) if isinstance(actual, dict) else None, value, f"{path}{key}.")
        else:
            got = actual.get(key) if isinstance(actual, dict) else None
            assert got == value, f"{path}{key}: {got!r} != {value!r}"


@pytest.mark.parametrize("path", sorted(CASES.glob("*.json")), ids=lambda p: p.stem)
def test_conformance(path: Path) -> None:
    spec = json.loads(path.read_text(encoding="utf-8"))
    options = spec.get("options", {})

    async def scenario() -> list[dict[str, Any]]:
        transport = Scripted()

        async def connector(url: str) -> Scripted:
            return transport

        client = SwitchboardClient(
            "ws://gw/api",
            user_id="u_1",
            connector=connector,
            store=MemoryStore(options.get("store", {})),
            echo=options.get("echo", False),
            ping_interval=None,
            max_connection_age=None,
            gap_hold=60,  # no gap fetch during a case
        )
        events: list[dict[str, Any]] = []
        client.on_message(lambda m: events.append(project(m)))
        client.on_presence(lambda p: events.append(project(p)))
        client.on_reset(lambda r: events.append(project(r)))
        client.on_gap(lambda g: events.append(project(g)))
        client.on_removed(lambda f: events.append(project(f)))
        client.start()
        who = await wait_sent(transport, "whoami", set())
        transport.push({"type": "identity", "ref": who["ref"], "connectionId": "c1",
                        "userId": "u_1", "rooms": []})  # fmt: skip
        resume = await wait_sent(transport, "resume", set())
        streams = {
            stream: options.get("resumed", {}).get(
                stream, {"after": after, "last": 0, "replayed": 0, "truncated": False}
            )
            for stream, after in resume["streams"].items()
        }
        transport.push({"type": "resumed", "ref": resume["ref"], "streams": streams})
        await client.wait_for(State.OPEN, 5)
        answered = {f["ref"] for f in transport.sent}
        calls: list[asyncio.Future[Any]] = []
        for step in spec["steps"]:
            if "call" in step:
                method = getattr(client, CALLS[step["call"]])
                calls.append(asyncio.ensure_future(method(*step["args"])))
            elif "reply" in step:
                request = await wait_sent(transport, step["reply"]["action"], answered)
                answered.add(request["ref"])
                transport.push({**step["reply"]["frame"], "ref": request["ref"]})
            elif "in" in step:
                transport.push(step["in"])
            elif "expectSent" in step:
                await settle()
                contains(transport.last(step["expectSent"]["action"]), step["expectSent"])
            await settle()
        await client.close()
        for call in calls:
            if call.done() and not call.cancelled():
                call.exception()  # retrieved
        return events

    assert asyncio.run(asyncio.wait_for(scenario(), 20)) == spec["events"]
