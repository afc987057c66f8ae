"""Read-only typed views over API Gateway WebSocket events (instead of dict digging)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from chalicelib.config import EndpointRule

# The execute-api host names of API Gateway: {apiId}.execute-api.{region}.amazonaws.com, and
# .amazonaws.com.cn in the China regions ("Invoke WebSocket APIs", API Gateway developer
# guide; the China regions' endpoints page).
_EXECUTE_API_SUFFIX = ".amazonaws.com"
_CHINA_SUFFIX = ".amazonaws.com.cn"


def execute_api_host(api_id: str, region: str) -> str:
    suffix = _CHINA_SUFFIX if region.startswith("cn-") else _EXECUTE_API_SUFFIX
    return f"{api_id}.execute-api.{region}{suffix}"


def management_endpoint(
    domain_name: str, stage: str, api_id: str, rule: EndpointRule
) -> str | None:
    """The ``@connections`` endpoint for a connection whose event carried these fields.

    ``execute-api`` mode: ``https://{apiId}.execute-api.{region}.amazonaws.com/{stage}``, right
    whichever domain the client dialled (a custom domain's ``domainName`` is the custom name,
    and its API mapping's path need not be the stage). None without an API id or a region.
    ``domain`` mode: ``https://{domainName}/{base path}`` (``https://{domainName}`` for an empty
    mapping path), for an API whose execute-api endpoint is disabled.
    """
    if not domain_name or not stage:
        return None
    if rule.mode == "domain":
        return f"https://{domain_name}" + (f"/{rule.base_path}" if rule.base_path else "")
    if not api_id or not rule.region:
        return None
    return f"https://{execute_api_host(api_id, rule.region)}/{stage}"


@dataclass(frozen=True)
class WsEvent:
    raw: dict[str, Any]
    # How to derive ``endpoint``; None reads it from the environment on use (as Settings does).
    rule: EndpointRule | None = None

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
    def api_id(self) -> str:
        return str(self._ctx.get("apiId", ""))

    @property
    def connected_at(self) -> int | None:
        value = self._ctx.get("connectedAt")
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def endpoint(self) -> str | None:
        """The management endpoint API Gateway answers at for this connection (see
        ``management_endpoint``); None when the event does not say enough to derive it."""
        rule = self.rule or EndpointRule.from_env()
        return management_endpoint(self.domain_name, self.stage, self.api_id, rule)

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
