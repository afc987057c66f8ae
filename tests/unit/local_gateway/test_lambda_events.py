"""The local gateway's events and frames against AWS's captured shapes (issue #17)."""

from __future__ import annotations

import json

from local_gateway.lambda_events import (
    ClientInfo,
    EventContext,
    connect_event,
    disconnect_event,
    gateway_error_frame,
    new_aws_id,
)

CTX = EventContext(domain_name="127.0.0.1:8001", stage="api", api_id="abcdefghij")


def _client(**changes: object) -> ClientInfo:
    info = ClientInfo(
        connection_id="JC1dgf9yoAMCK-g=",
        connected_at_ms=1_700_000_000_000,
        source_ip="203.0.113.7",
        user_agent="pytest",
        headers=[
            ("Host", "127.0.0.1:8001"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
            ("User-Agent", "pytest"),
        ],
        query_string="userId=u_1",
    )
    for name, value in changes.items():
        setattr(info, name, value)
    return info


def test_ids_use_the_url_safe_alphabet_like_aws() -> None:
    # Captured AWS ids: VNRXVFJOywMF3-Q=, HXT_RfBnPHcCIIg= ('-' and '_', never '+' or '/').
    ids = [new_aws_id() for _ in range(2000)]
    assert all(len(i) == 16 and i.endswith("=") for i in ids)
    assert not any("+" in i or "/" in i for i in ids)
    assert any("-" in i for i in ids) and any("_" in i for i in ids)


def test_connect_event_without_query_or_user_agent_leaves_the_keys_out() -> None:
    event = connect_event(CTX, _client(query_string="", user_agent=None), 8001)
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event
    assert event["requestContext"]["identity"] == {"sourceIp": "203.0.113.7"}


def test_connect_event_with_query_has_both_maps() -> None:
    event = connect_event(CTX, _client(query_string="userId=u_1&userId=u_2"), 8001)
    assert event["queryStringParameters"] == {"userId": "u_2"}
    assert event["multiValueQueryStringParameters"] == {"userId": ["u_1", "u_2"]}
    assert event["requestContext"]["identity"]["userAgent"] == "pytest"


def test_connect_headers_carry_no_connection_or_upgrade() -> None:
    event = connect_event(CTX, _client(), 8001)
    for headers in (event["headers"], event["multiValueHeaders"]):
        assert "Connection" not in headers and "Upgrade" not in headers
        assert "Sec-WebSocket-Key" in headers and "X-Forwarded-For" in headers


def test_disconnect_headers_are_aws_fixed_set() -> None:
    # aws-lambda-go events/testdata/apigw-websocket-request-disconnect.json
    event = disconnect_event(CTX, _client(), 8001, 1000, "Connection Closed Normally")
    assert event["headers"] == {
        "Host": "127.0.0.1:8001",
        "x-api-key": "",
        "X-Forwarded-For": "",
        "x-restapi": "",
    }
    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
    ctx = event["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (
        1000,
        "Connection Closed Normally",
    )


def test_gateway_error_frame_is_aws_bytes() -> None:
    # Captured: {"message": "Internal server error", "connectionId":"VNRUSeldSwMCIRQ=",
    # "requestId":"VNRXVFJOywMF3-Q="} (aws-samples/simple-websockets-chat-app issue #42).
    frame = gateway_error_frame("Internal server error", "VNRUSeldSwMCIRQ=", "VNRXVFJOywMF3-Q=")
    assert frame == (
        b'{"message": "Internal server error", "connectionId":"VNRUSeldSwMCIRQ=", '
        b'"requestId":"VNRXVFJOywMF3-Q="}'
    )
    assert json.loads(gateway_error_frame('a "quoted" one', "c", "r"))["message"] == (
        'a "quoted" one'
    )
