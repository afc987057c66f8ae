"""Read-only typed views over API Gateway WebSocket events (instead of dict digging)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class WsEvent:
    raw: dict[str, Any]

    @property
    def _ctx(self) -> dict[str, Any]:
        ctx = self.raw.get("requestContext") or {}
        return ctx if isinstance(ctx, dict) else {}

    @property
    def connection_id(self) -> str:
        return str(self._ctx.get("connectionId", ""))

    @property
    def request_id(self) -> str:
        return str(self._ctx.get("requestId", ""))

    @property
    def route_key(self) -> str:
        return str(self._ctx.get("routeKey", ""))

    @property
    def domain_name(self) -> str:
        return str(self._ctx.get("domainName", ""))

    @property
    def stage(self) -> str:
        return str(self._ctx.get("stage", ""))

    @property
    def connected_at(self) -> int | None:
        value = self._ctx.get("connectedAt")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def endpoint(self) -> str | None:
        """The management endpoint API Gateway would answer at for this connection."""
        if not self.domain_name or not self.stage:
            return None
        return f"https://{self.domain_name}/{self.stage}"

    @property
    def query(self) -> dict[str, str]:
        query = self.raw.get("queryStringParameters") or {}
        return {str(k): str(v) for k, v in query.items()} if isinstance(query, dict) else {}

    @property
    def source_ip(self) -> str | None:
        identity = self._ctx.get("identity") or {}
        return identity.get("sourceIp") if isinstance(identity, dict) else None

    @property
    def disconnect_status(self) -> int | None:
        value = self._ctx.get("disconnectStatusCode")
        return value if isinstance(value, int) else None

    @property
    def body(self) -> str | bytes | None:
        body = self.raw.get("body")
        if body is None:
            return None
        if self.raw.get("isBase64Encoded") and isinstance(body, str):
            try:
                return base64.b64decode(body)
            except ValueError:
                return body
        return str(body)
