"""switchboard's Python client: asyncio, on ``websockets``.

One ``Client`` per connection: it reconnects with backoff, rejoins its rooms, resumes every
stream from the last seq it delivered, and hands each message to the app once, in seq order
per stream. See README.md next to this package.
"""

from __future__ import annotations

from switchboard_client.client import (
    Backoff,
    Client,
    ClientClosed,
    ConnectionLost,
    Connector,
    QueueFull,
    RequestTimeout,
    State,
    StateChange,
    SwitchboardError,
    Transport,
    websocket_connector,
)
from switchboard_client.ordering import Entry, Message, Presence, Sequencer, Stats, entry_from_frame
from switchboard_client.store import FileStore, MemoryStore, SeqStore

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "Client",
    "ClientClosed",
    "ConnectionLost",
    "Connector",
    "Entry",
    "FileStore",
    "MemoryStore",
    "Message",
    "Presence",
    "QueueFull",
    "RequestTimeout",
    "SeqStore",
    "Sequencer",
    "State",
    "StateChange",
    "Stats",
    "SwitchboardError",
    "Transport",
    "entry_from_frame",
    "websocket_connector",
]
