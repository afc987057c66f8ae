"""switchboard's Python client: asyncio, on ``websockets``.

One ``SwitchboardClient`` (also named ``Client``) per connection: it reconnects with backoff, rejoins its rooms, resumes every
stream from the last seq it delivered, and hands each message to the app once, in seq order
per stream. See README.md next to this package.
"""

from __future__ import annotations

from switchboard_client.client import (
    Backoff,
    Client,
    ConnectionLost,
    Connector,
    State,
    StateChange,
    SwitchboardClient,
    Transport,
    jwt_expiry,
    websocket_connector,
)
from switchboard_client.errors import (
    ClientClosed,
    ConnectError,
    ConnectTimeout,
    ErrorCode,
    QueueFull,
    RequestTimeout,
    SwitchboardError,
    is_retryable,
)
from switchboard_client.ordering import (
    Entry,
    Gap,
    Message,
    Presence,
    Reset,
    Sequencer,
    Stats,
    StreamOrder,
    entry_from_frame,
)
from switchboard_client.rooms import Room, User
from switchboard_client.store import FileStore, MemoryStore, SeqStore

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "Client",
    "ClientClosed",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionLost",
    "Connector",
    "Entry",
    "ErrorCode",
    "FileStore",
    "Gap",
    "MemoryStore",
    "Message",
    "Presence",
    "QueueFull",
    "RequestTimeout",
    "Reset",
    "Room",
    "SeqStore",
    "Sequencer",
    "State",
    "StateChange",
    "Stats",
    "StreamOrder",
    "SwitchboardClient",
    "SwitchboardError",
    "Transport",
    "User",
    "entry_from_frame",
    "is_retryable",
    "jwt_expiry",
    "websocket_connector",
]
