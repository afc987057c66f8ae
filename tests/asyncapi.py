"""The protocol document (docs/asyncapi.yaml) as a validator of frames.

``SERVER_FRAMES`` and ``CLIENT_FRAMES`` name the schema of every frame type and action, listed
here by hand (not read from the code): a frame the server starts to emit needs a line here and
a schema there. ``FrameChecker`` validates frames and files what failed, naming the frame.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "asyncapi.yaml"

# Server frame ``type`` -> schema. API Gateway's own error frame has no type.
SERVER_FRAMES = {
    "message": "MessageFrame",
    "ack": "AckFrame",
    "error": "ErrorFrame",
    "pong": "PongFrame",
    "identity": "IdentityFrame",
    "resumed": "ResumedFrame",
    "history": "HistoryFrame",
    "replay": "ReplayFrame",
    "members": "MembersFrame",
    "presence": "PresenceFrame",
    "authorized": "AuthorizedFrame",
    "removed": "RemovedFrame",
}
GATEWAY_ERROR = "GatewayErrorFrame"
# Client frame ``action`` -> schema.
CLIENT_FRAMES = {
    "sendMessage": "SendMessage",
    "broadcastAll": "BroadcastAll",
    "join": "Join",
    "leave": "Leave",
    "sendRoom": "SendRoom",
    "ping": "Ping",
    "whoami": "WhoAmI",
    "resume": "Resume",
    "history": "HistoryRequest",
    "members": "MembersRequest",
    "authorize": "Authorize",
}


@functools.cache
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    return loaded


@functools.cache
def validator(schema: str) -> Draft202012Validator:
    """A validator of one component schema; its ``$ref``s resolve within the document."""
    root = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": document()["components"],
        "$ref": f"#/components/schemas/{schema}",
    }
    Draft202012Validator.check_schema(root)
    return Draft202012Validator(root)


def server_schema(frame: Any) -> str | None:
    """The schema a received frame must match; None for a frame of no known kind."""
    if not isinstance(frame, dict):
        return None
    if "type" in frame:
        return SERVER_FRAMES.get(frame["type"]) if isinstance(frame["type"], str) else None
    return GATEWAY_ERROR


def problems(frame: Any, schema: str | None) -> list[str]:
    """Why ``frame`` does not match ``schema`` (empty when it does)."""
    if schema is None:
        return ["no schema for a frame of this kind"]
    errors = sorted(validator(schema).iter_errors(frame), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(frame)'}: {e.message}" for e in errors]


class FrameChecker:
    """Validates every server frame it is given; ``failures`` names each one that failed."""

    def __init__(self) -> None:
        self.checked = 0
        self.failures: list[str] = []

    def __call__(self, frame: Any) -> None:
        self.checked += 1
        schema = server_schema(frame)
        found = problems(frame, schema)
        if found:
            shown = json.dumps(frame, ensure_ascii=False)[:500]
            self.failures.append(f"{shown} does not match {schema}: {'; '.join(found)}")
