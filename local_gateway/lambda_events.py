"""API-Gateway-shaped WebSocket events, ids and the Lambda context.

The shapes copy what API Gateway (WebSocket APIs, Lambda proxy integration) hands to a
Lambda function, so handlers run locally exactly as they would behind AWS.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import string
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# AWS reports this reason when a client closes without a status code (1005).
NO_STATUS_REASON = "Client-side close frame status not set"
ABNORMAL_REASON = "Connection was closed abnormally"

# API Gateway consumes the upgrade: its $connect events carry no Connection or Upgrade
# header (aws-lambda-go events/testdata/apigw-websocket-request.json lists Host,
# Sec-WebSocket-*, X-Amzn-Trace-Id and X-Forwarded-*).
HOP_BY_HOP_HEADERS = frozenset({"connection", "upgrade"})

# The fixed header set of every $disconnect event, as captured in aws-lambda-go
# events/testdata/apigw-websocket-request-disconnect.json: only Host carries a value.
DISCONNECT_HEADER_NAMES = ("Host", "x-api-key", "X-Forwarded-For", "x-restapi")


def new_aws_id() -> str:
    """An id in the style API Gateway uses for connectionId/requestId/messageId.

    Real ids are 11 bytes in URL-safe base64 (16 characters ending in '='), e.g.
    ``R1kmxc2VNjMCFIA=``; they hold '-' and '_', never '+' or '/' (captured ids:
    ``VNRXVFJOywMF3-Q=`` in aws-samples/simple-websockets-chat-app issue #42,
    ``HXT_RfBnPHcCIIg=``, ``eHrdFcnvvHcCE-w=``). The '=' still needs URL-encoding in a path.
    """
    return base64.urlsafe_b64encode(os.urandom(11)).decode("ascii")


def new_api_id() -> str:
    """A 10-character lowercase api id like ``a1b2c3d4e5``."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(10))


def now_ms() -> int:
    return int(time.time() * 1000)


def format_request_time(epoch_ms: int) -> str:
    """``25/Nov/2026:12:00:00 +0000`` (locale independent, always UTC)."""
    t = time.gmtime(epoch_ms / 1000)
    month = _MONTHS[t.tm_mon - 1]
    return (
        f"{t.tm_mday:02d}/{month}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def iso8601(epoch_ms: int) -> str:
    """``2026-11-25T12:00:00.000Z`` as the management API returns timestamps."""
    t = time.gmtime(epoch_ms / 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{epoch_ms % 1000:03d}Z"


@dataclass
class ClientInfo:
    """What the gateway knows about a connection from its handshake."""

    connection_id: str
    connected_at_ms: int
    source_ip: str
    user_agent: str | None
    headers: list[tuple[str, str]] = field(default_factory=list)
    query_string: str = ""


@dataclass
class EventContext:
    """Per-gateway constants that appear in every event."""

    domain_name: str
    stage: str
    api_id: str


def _request_context(
    ctx: EventContext,
    client: ClientInfo,
    route_key: str,
    event_type: str,
    request_ms: int,
) -> dict[str, Any]:
    request_id = new_aws_id()
    identity = {"sourceIp": client.source_ip}
    if client.user_agent is not None:
        # AWS leaves userAgent out, rather than null, for a client that sent no User-Agent.
        identity["userAgent"] = client.user_agent
    return {
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": format_request_time(request_ms),
        "messageDirection": "IN",
        "stage": ctx.stage,
        "connectedAt": client.connected_at_ms,
        "requestTimeEpoch": request_ms,
        "identity": identity,
        "requestId": request_id,
        "domainName": ctx.domain_name,
        "connectionId": client.connection_id,
        "apiId": ctx.api_id,
    }


def _header_maps(
    client: ClientInfo, ctx: EventContext, port: int
) -> tuple[dict[str, str], dict[str, list[str]]]:
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    for name, value in client.headers:
        if name.lower() in HOP_BY_HOP_HEADERS:
            continue
        # API Gateway keeps the last value in the single-valued map.
        single[name] = value
        multi.setdefault(name, []).append(value)
    # API Gateway adds forwarding headers of its own; copy them so code that
    # reads X-Forwarded-For (e.g. rate limiting by IP) sees the same thing.
    for name, value in (
        ("X-Amzn-Trace-Id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"),
        ("X-Forwarded-For", client.source_ip),
        ("X-Forwarded-Port", str(port)),
        ("X-Forwarded-Proto", "http"),
    ):
        if name not in single:
            single[name] = value
            multi[name] = [value]
    return single, multi


def connect_event(ctx: EventContext, client: ClientInfo, port: int) -> dict[str, Any]:
    single, multi = _header_maps(client, ctx, port)
    event: dict[str, Any] = {"headers": single, "multiValueHeaders": multi}
    pairs = parse_qsl(client.query_string, keep_blank_values=True)
    if pairs:
        # Without a query string AWS leaves both keys out (not null): code that indexes
        # event["queryStringParameters"] raises KeyError there, so it must here too.
        query: dict[str, str] = {}
        multi_query: dict[str, list[str]] = {}
        for name, value in pairs:
            query[name] = value  # last value wins, as in API Gateway
            multi_query.setdefault(name, []).append(value)
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = multi_query
    event["requestContext"] = _request_context(
        ctx, client, "$connect", "CONNECT", client.connected_at_ms
    )
    event["isBase64Encoded"] = False
    return event


def message_event(ctx: EventContext, client: ClientInfo, body: str) -> dict[str, Any]:
    """A text message; binary frames never reach a handler (the gateway closes with 1003)."""
    request_context = _request_context(ctx, client, "$default", "MESSAGE", now_ms())
    request_context["messageId"] = new_aws_id()
    return {"requestContext": request_context, "body": body, "isBase64Encoded": False}


def disconnect_event(
    ctx: EventContext,
    client: ClientInfo,
    port: int,
    status_code: int,
    reason: str,
) -> dict[str, Any]:
    request_context = _request_context(ctx, client, "$disconnect", "DISCONNECT", now_ms())
    # On AWS both fields live inside requestContext.
    request_context["disconnectStatusCode"] = status_code
    request_context["disconnectReason"] = reason
    headers = dict.fromkeys(DISCONNECT_HEADER_NAMES, "")
    headers["Host"] = ctx.domain_name
    return {
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "requestContext": request_context,
        "isBase64Encoded": False,
    }


def gateway_error_frame(message: str, connection_id: str, request_id: str) -> bytes:
    """The frame API Gateway sends when it cannot deliver a message to the integration.

    Byte for byte AWS's formatting, which is neither compact nor ``json.dumps``' default:
    a space after the first colon and after each comma, none after the later colons.
    Captured: ``{"message": "Internal server error", "connectionId":"VNRUSeldSwMCIRQ=",
    "requestId":"VNRXVFJOywMF3-Q="}`` (aws-samples/simple-websockets-chat-app issue #42,
    nearst/laconia issue #41) and ``{"message": "Forbidden", "connectionId":"...", ...}``
    (aws-samples/simple-websockets-chat-app issue #24).
    """
    return (
        f'{{"message": {json.dumps(message)}, "connectionId":{json.dumps(connection_id)}, '
        f'"requestId":{json.dumps(request_id)}}}'
    ).encode()


class LambdaContext:
    """The subset of the Lambda runtime's context object that handlers use."""

    def __init__(
        self, function_name: str, memory_limit_in_mb: int, timeout_ms: int, region: str
    ) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{function_name}"
        self.memory_limit_in_mb = memory_limit_in_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
