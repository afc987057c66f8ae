"""The HTTP answers that refuse a WebSocket handshake: the gateway's own, and a ``$connect``
handler's (whose non-2xx status, headers and body API Gateway passes on to the client).
"""

from __future__ import annotations

from local_gateway.connections_api import json_body
from local_gateway.http11 import build_response
from local_gateway.lambda_runtime import Invocation


def gateway_refusal(status: int, message: str) -> bytes:
    """A handshake refused by the gateway itself (not by the handler's own answer)."""
    return build_response(
        status,
        [("Content-Type", "application/json")],
        json_body({"message": message}),
        keep_alive=False,
    )


def connect_refusal(record: Invocation) -> bytes | None:
    """The HTTP response refusing the handshake, or None to accept it."""
    if record.timed_out:
        return gateway_refusal(504, "Endpoint request timed out")
    result = record.result
    status = result.get("statusCode") if isinstance(result, dict) else None
    if record.error:
        # A raising $connect handler refuses the handshake with 502 on AWS (a public
        # wscat capture: "error: Unexpected server response: 502"; issue #17).
        return gateway_refusal(502, "Internal server error")
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        return gateway_refusal(500, "Internal server error")
    if 200 <= status <= 299:
        return None
    assert isinstance(result, dict)
    body = result.get("body") or ""
    body_bytes = body.encode("utf-8") if isinstance(body, str) else json_body(body)
    headers = [
        (str(k), str(v))
        for k, v in (result.get("headers") or {}).items()
        if k.lower() not in ("content-length", "connection", "transfer-encoding")
    ]
    return build_response(status, headers, body_bytes, keep_alive=False)
