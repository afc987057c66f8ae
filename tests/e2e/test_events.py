"""The events handlers receive: every API Gateway field, for CONNECT, MESSAGE, DISCONNECT."""

from __future__ import annotations

import re
import socket
import time

import pytest

from local_gateway import EmbeddedDynamoDB, LocalGateway
from tests.e2e.helpers import AWS_ID_PATTERN, BARE_APP, ECHO_APP, connection_id
from tests.gateways import GatewayFactory, http
from tests.wsclient import WsConnect

REQUEST_TIME = re.compile(r"^\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000$")
COMMON_CONTEXT_KEYS = {
    "routeKey", "eventType", "extendedRequestId", "requestTime", "messageDirection", "stage",
    "connectedAt", "requestTimeEpoch", "identity", "requestId", "domainName", "connectionId",
    "apiId",
}  # fmt: skip


def _check_common(ctx: dict, gw: LocalGateway, cid: str, route: str, kind: str) -> None:
    assert COMMON_CONTEXT_KEYS <= set(ctx)
    assert ctx["routeKey"] == route
    assert ctx["eventType"] == kind
    assert ctx["connectionId"] == cid
    assert re.match(AWS_ID_PATTERN, cid)
    assert ctx["domainName"] == f"127.0.0.1:{gw.ws_port_bound}"
    assert ctx["stage"] == "api"
    assert ctx["apiId"] == gw.api_id and re.match(r"^[a-z0-9]{10}$", gw.api_id)
    assert ctx["messageDirection"] == "IN"
    assert REQUEST_TIME.match(ctx["requestTime"])
    assert abs(ctx["requestTimeEpoch"] - time.time() * 1000) < 60_000
    assert isinstance(ctx["connectedAt"], int) and ctx["connectedAt"] <= ctx["requestTimeEpoch"]
    assert re.match(AWS_ID_PATTERN, ctx["requestId"])
    assert ctx["identity"]["sourceIp"] == "127.0.0.1"
    assert ctx["identity"]["userAgent"] == "switchboard-e2e/1.0"


@pytest.mark.timeout(30)
def test_connect_event_has_every_field(echo_gateway: LocalGateway, ws_connect: WsConnect) -> None:
    ws = ws_connect(
        echo_gateway,
        "userId=u_123&tag=a&tag=b",
        additional_headers={"X-Custom": "yes"},
        user_agent_header="switchboard-e2e/1.0",
    )
    cid = connection_id(ws)
    [record] = echo_gateway.invocations.find("$connect", cid)
    event = record.event
    _check_common(event["requestContext"], echo_gateway, cid, "$connect", "CONNECT")
    assert event["queryStringParameters"] == {"userId": "u_123", "tag": "b"}
    assert event["multiValueQueryStringParameters"] == {"userId": ["u_123"], "tag": ["a", "b"]}
    assert event["headers"]["X-Custom"] == "yes"
    assert event["headers"]["Host"] == f"127.0.0.1:{echo_gateway.ws_port_bound}"
    assert "Sec-WebSocket-Key" in event["headers"]
    # API Gateway consumes the upgrade: no Connection/Upgrade header reaches $connect.
    for headers in (event["headers"], event["multiValueHeaders"]):
        assert {name.lower() for name in headers} & {"connection", "upgrade"} == set()
    assert event["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert event["multiValueHeaders"]["X-Custom"] == ["yes"]
    assert event["isBase64Encoded"] is False
    assert record.result == {"statusCode": 200}
    # The context the handler got behaves like Lambda's.
    assert record.error is None


@pytest.mark.timeout(30)
def test_connect_without_query_or_user_agent_leaves_the_keys_out(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    """AWS omits these keys (not null): event["queryStringParameters"] raises KeyError there."""
    cid = connection_id(ws_connect(echo_gateway, user_agent_header=None))
    records = [echo_gateway.invocations.find("$connect", cid)[0]]
    records += echo_gateway.invocations.wait_for("$default", cid)
    event = records[0].event
    assert "queryStringParameters" not in event
    assert "multiValueQueryStringParameters" not in event
    assert "User-Agent" not in event["headers"]
    for record in records:
        assert record.event["requestContext"]["identity"] == {"sourceIp": "127.0.0.1"}


@pytest.mark.timeout(30)
def test_message_events(echo_gateway: LocalGateway, ws_connect: WsConnect) -> None:
    """Text messages only: a binary frame never reaches a handler (see test_behaviour)."""
    ws = ws_connect(echo_gateway, user_agent_header="switchboard-e2e/1.0")
    cid = connection_id(ws)
    ws.send("héllo")
    assert ws.recv(timeout=5) == "héllo"
    ws.send('{"action": "x"}')
    assert ws.recv(timeout=5) == '{"action": "x"}'
    records = echo_gateway.invocations.wait_for("$default", cid, count=3)
    for record in records:
        event = record.event
        ctx = event["requestContext"]
        _check_common(ctx, echo_gateway, cid, "$default", "MESSAGE")
        assert re.match(AWS_ID_PATTERN, ctx["messageId"])
        assert "headers" not in event
        assert event["isBase64Encoded"] is False
    assert {r.event["body"] for r in records} == {"whoami", "héllo", '{"action": "x"}'}
    ids = {r.event["requestContext"]["messageId"] for r in records}
    assert len(ids) == 3


@pytest.mark.timeout(30)
def test_disconnect_event_after_client_close(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    ws = ws_connect(echo_gateway, user_agent_header="switchboard-e2e/1.0")
    cid = connection_id(ws)
    ws.close(code=4001, reason="bye now")
    [record] = echo_gateway.invocations.wait_for("$disconnect", cid)
    ctx = record.event["requestContext"]
    _check_common(ctx, echo_gateway, cid, "$disconnect", "DISCONNECT")
    assert ctx["disconnectStatusCode"] == 4001
    assert ctx["disconnectReason"] == "bye now"
    # AWS's fixed $disconnect header set (aws-lambda-go apigw-websocket-request-disconnect.json).
    host = f"127.0.0.1:{echo_gateway.ws_port_bound}"
    headers = {"Host": host, "x-api-key": "", "X-Forwarded-For": "", "x-restapi": ""}
    assert record.event["headers"] == headers
    assert record.event["multiValueHeaders"] == {k: [v] for k, v in headers.items()}
    assert cid not in echo_gateway.connection_ids()


@pytest.mark.timeout(30)
def test_disconnect_without_close_code_reports_1005(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    # A close frame without a status code (websockets never sends one): FIN+CLOSE, masked,
    # empty payload, zero mask.
    ws.socket.sendall(b"\x88\x80\x00\x00\x00\x00")
    ctx = echo_gateway.invocations.wait_for("$disconnect", cid)[0].event["requestContext"]
    assert ctx["disconnectStatusCode"] == 1005
    assert ctx["disconnectReason"] == "Client-side close frame status not set"


@pytest.mark.timeout(30)
def test_disconnect_runs_on_abrupt_drop(echo_gateway: LocalGateway, ws_connect: WsConnect) -> None:
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: like a phone losing signal
    ctx = echo_gateway.invocations.wait_for("$disconnect", cid)[0].event["requestContext"]
    assert ctx["disconnectStatusCode"] == 1006


@pytest.mark.timeout(30)
def test_environment_is_set_before_import(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(ECHO_APP, schema_path=str(ECHO_APP / "schema.json"), auth_mode="off")
    assert gw.urls is not None
    env = gw.app_module.IMPORT_ENV
    assert env["APIGW_MANAGEMENT_ENDPOINT"] == gw.urls.management
    assert env["APIGW_MANAGEMENT_ENDPOINT"] == f"http://127.0.0.1:{gw.ws_port_bound}/api"
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == gw.urls.dynamodb
    assert env["CONNECTIONS_TABLE"] == "echo-fixture-connections"
    assert env["FIXTURE_TOP"] == "top"  # top-level environment_variables
    assert env["FIXTURE_OVERRIDE"] == "dev"  # the stage's wins
    assert env["AUTH_MODE"] == "off"  # --auth-mode overrides the stage
    assert env["AWS_REGION"] == "us-east-1"


@pytest.mark.timeout(30)
def test_chalice_stage_selects_env_and_api_stage(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = gateway_factory(ECHO_APP, chalice_stage="prod", schema_path=str(ECHO_APP / "schema.json"))
    assert gw.urls is not None and gw.urls.websocket.endswith("/live")
    assert gw.app_module.IMPORT_ENV["FIXTURE_OVERRIDE"] == "prod"
    assert gw.table_name == "echo-fixture-prod"
    ws = ws_connect(gw)
    cid = connection_id(ws)
    assert gw.invocations.find("$connect", cid)[0].event["requestContext"]["stage"] == "live"


@pytest.mark.timeout(30)
def test_rest_routes_and_table_share_the_stack(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    """The connect handler wrote to the embedded table; a REST route reads it back."""
    cid = connection_id(ws_connect(echo_gateway))
    status, listing = http(echo_gateway, "GET", "/connections")
    assert status == 200 and listing["ids"] == [cid]
    assert http(echo_gateway, "GET", "/") == (
        200, {"fixture": "echo", "top": "top", "override": "dev"},
    )  # fmt: skip


@pytest.mark.timeout(30)
def test_app_without_connect_handler_and_chalice_send(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    """Only $default: connects unconditionally; Chalice's websocket_api.send reaches the client."""
    gw = gateway_factory(BARE_APP, rest_port=None)
    assert gw.urls is not None and gw.urls.websocket.endswith("/v1") and gw.urls.rest is None
    ws = ws_connect(gw)
    ws.send("hi")
    assert ws.recv(timeout=5) == "bare:hi"
    ws.close()
    # Once the gateway dropped the connection it has decided about $disconnect (it runs one
    # only for an app that has the route): wait for that, not a guessed pause.
    deadline = time.monotonic() + 5
    while gw.connection_ids() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gw.connection_ids() == []
    assert gw.invocations.find("$disconnect") == []


@pytest.mark.timeout(30)
def test_existing_dynamodb_endpoint(gateway_factory: GatewayFactory, ws_connect: WsConnect) -> None:
    """--dynamodb-endpoint: the table is created there and the handlers use it."""
    with EmbeddedDynamoDB() as dynamodb:
        gw = gateway_factory(
            ECHO_APP,
            schema_path=str(ECHO_APP / "schema.json"),
            dynamodb_endpoint=dynamodb.endpoint_url,
            credentials=dynamodb.credentials,
        )
        assert gw.urls is not None and gw.urls.dynamodb == dynamodb.endpoint_url
        cid = connection_id(ws_connect(gw))
        items = dynamodb.client().scan(TableName="echo-fixture-connections")["Items"]
        assert [item["PK"]["S"] for item in items] == [cid]
        ttl = dynamodb.client().describe_time_to_live(TableName="echo-fixture-connections")
        assert ttl["TimeToLiveDescription"]["AttributeName"] == "ttl"
        gw.stop()
