"""Room and user objects: ``client.room("lobby")`` and ``client.user("u_2")``, as Ably's
``channels.get``, Pusher's ``subscribe`` or Centrifugo's ``newSubscription`` give them (the
JavaScript client's ``Room`` and ``User``). A room's listeners get the client's events for that
room only; ``async for message in room`` iterates its messages as they are delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from switchboard_client.ordering import Gap, Message, Presence, Reset

if TYPE_CHECKING:
    from switchboard_client.client import SwitchboardClient

Frame = dict[str, Any]


class _Listeners:
    """The events one room or user object re-emits."""

    def __init__(self) -> None:
        self._message: list[Callable[[Message], None]] = []
        self._queues: list[asyncio.Queue[Message]] = []

    def on_message(self, listener: Callable[[Message], None]) -> None:
        self._message.append(listener)

    def _message_in(self, message: Message) -> None:
        for listener in list(self._message):
            listener(message)
        for queue in self._queues:
            queue.put_nowait(message)

    async def __aiter__(self) -> AsyncIterator[Message]:
        """Every message delivered from now on, in order, until the iteration is left."""
        queue: asyncio.Queue[Message] = asyncio.Queue()
        self._queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)


class Room(_Listeners):
    """One room of ``client``: ``join``, ``leave``, ``publish``, ``send``, ``history``,
    ``members`` and the room's events (``on_message``, ``on_presence``, ``on_removed``,
    ``on_reset``, ``on_gap``, ``async for``)."""

    def __init__(self, client: SwitchboardClient, name: str) -> None:
        super().__init__()
        self.client = client
        self.name = name
        self.stream = f"room:{name}"
        self._presence: list[Callable[[Presence], None]] = []
        self._removed: list[Callable[[Frame], None]] = []
        self._reset: list[Callable[[Reset], None]] = []
        self._gap: list[Callable[[Gap], None]] = []

    @property
    def joined(self) -> bool:
        return self.name in self.client.rooms

    async def join(self) -> Frame:
        """Join (remembered across reconnects); returns once the room's stream is resumed."""
        return await self.client.join(self.name)

    async def leave(self) -> Frame:
        return await self.client.leave(self.name)

    async def publish(
        self, event: str, data: Any = None, *, text: str | None = None, ephemeral: bool = False
    ) -> Frame:
        return await self.client.publish(self.name, event, data, text=text, ephemeral=ephemeral)

    async def send(self, text: str) -> Frame:
        return await self.client.send_room(self.name, text)

    async def history(
        self, *, before: int | None = None, after: int | None = None, limit: int = 50
    ) -> Frame:
        """One page of the room's log: the newest ``limit`` (default), those before ``before``
        (a page's ``prev`` is the ``before`` of the page before it), or forward from ``after``."""
        if before is not None:
            return await self.client.history(self.stream, None, limit, before=before)
        if after is not None:
            return await self.client.history(self.stream, after, limit)
        return await self.client.history(self.stream, None, limit, latest=True)

    async def members(self) -> Frame:
        return await self.client.members(self.name)

    def on_presence(self, listener: Callable[[Presence], None]) -> None:
        self._presence.append(listener)

    def on_removed(self, listener: Callable[[Frame], None]) -> None:
        self._removed.append(listener)

    def on_reset(self, listener: Callable[[Reset], None]) -> None:
        self._reset.append(listener)

    def on_gap(self, listener: Callable[[Gap], None]) -> None:
        self._gap.append(listener)

    def _event_in(self, value: object) -> None:
        if isinstance(value, Message):
            self._message_in(value)
        elif isinstance(value, Presence):
            for presence in list(self._presence):
                presence(value)
        elif isinstance(value, Reset):
            for reset in list(self._reset):
                reset(value)
        elif isinstance(value, Gap):
            for gap in list(self._gap):
                gap(value)
        elif isinstance(value, dict):
            for removed in list(self._removed):
                removed(value)


class User(_Listeners):
    """Direct messages with one user: ``send``, ``publish``, and what they sent this client
    (``on_message``, ``async for``)."""

    def __init__(self, client: SwitchboardClient, user_id: str) -> None:
        super().__init__()
        self.client = client
        self.id = user_id

    async def send(self, text: str) -> Frame:
        return await self.client.send_message(self.id, text)

    async def publish(
        self, event: str, data: Any = None, *, text: str | None = None, ephemeral: bool = False
    ) -> Frame:
        return await self.client.send_message(
            self.id, text, event=event, data=data, ephemeral=ephemeral
        )
