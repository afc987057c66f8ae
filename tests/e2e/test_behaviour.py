"""API Gateway behaviour: handshake refusal, handler errors, size limits, timeouts, shutdown."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from local_gateway import LocalGateway
from tests.e2e.helpers import ECHO_APP, connection_id
from tests.gateways import GatewayFactory
from tests.wsclient import WsConnect, recv_json

SCHEMA = str(ECHO_APP / "schema.json")


def _echo(factory: GatewayFactory, **options: object) -> LocalGateway:
    return factory(ECHO_APP, schema_path=SCHEMA, **options)


def _closed(ws: object, timeout: float = 5) -> ConnectionClosed:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)  # type: ignore[attr-defined]
    return closed.value


@pytest.mark.timeout(30)
def test_connect_refused_with_handler_status(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(echo_gateway, "deny=1")
    assert refused.value.response.status_code == 403
    assert json.loads(refused.value.response.body) == {"message": "denied"}
    [record] = echo_gateway.invocations.wait_for("$connect")
    assert record.result["statusCode"] == 403
    assert echo_gateway.connection_ids() == []
    # Instead of a guessed pause: a connection opened and closed after the refusal has its
    # $disconnect run; one owed to the refused handshake would have been started before it.
    probe = ws_connect(echo_gateway)
    probe_id = connection_id(probe)
    probe.close()
    echo_gateway.invocations.wait_for("$disconnect", probe_id)
    disconnects = echo_gateway.invocations.find("$disconnect")
    assert [r.connection_id for r in disconnects] == [probe_id]  # the refused one never connected


@pytest.mark.timeout(30)
def test_connect_handler_error_refuses_with_502(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    """AWS answers a raising $connect with 502 (wscat: "Unexpected server response: 502")."""
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(echo_gateway, "raise=1")
    assert refused.value.response.status_code == 502
    assert json.loads(refused.value.response.body) == {"message": "Internal server error"}
    assert "connect failed on purpose" in (echo_gateway.invocations.find("$connect")[0].error or "")


@pytest.mark.timeout(30)
def test_connect_waits_for_the_handler_and_times_out_with_504(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = _echo(gateway_factory, integration_timeout=0.5)
    started = time.perf_counter()
    ws_connect(gw, "sleep=0.2")  # the upgrade completes only after $connect returns
    assert time.perf_counter() - started >= 0.2
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(gw, "sleep=1")
    assert refused.value.response.status_code == 504


@pytest.mark.timeout(30)
def test_message_handler_error_sends_internal_server_error_frame(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    ws.send("raise")
    frame = ws.recv(timeout=5)
    records = echo_gateway.invocations.wait_for("$default", cid, count=2)
    [record] = [r for r in records if r.event["body"] == "raise"]  # log order = finish order
    assert record.error and "message failed on purpose" in record.error
    request_id = record.event["requestContext"]["requestId"]
    # Byte for byte AWS's frame, as captured with wscat (aws-samples/simple-websockets-chat-app
    # issue #42): a space after the first colon and after the commas only.
    assert frame == (
        f'{{"message": "Internal server error", "connectionId":"{cid}", '
        f'"requestId":"{request_id}"}}'
    )
    ws.send("still open")  # the socket survives a failing handler
    assert ws.recv(timeout=5) == "still open"


@pytest.mark.timeout(30)
def test_message_handler_timeout_frame(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = _echo(gateway_factory, integration_timeout=0.3)
    ws = ws_connect(gw)
    ws.send("sleep:0.8")
    assert recv_json(ws)["message"] == "Endpoint request timed out"


@pytest.mark.timeout(30)
def test_binary_frame_closes_with_1003_and_runs_no_handler(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    """AWS: "If a client app sends a binary frame, API Gateway rejects it and disconnects the
    client with code 1003" (developer guide, binary media types for WebSocket APIs)."""
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    ws.send(bytes(range(256)))
    closed = _closed(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1003
    ctx = echo_gateway.invocations.wait_for("$disconnect", cid)[0].event["requestContext"]
    assert ctx["disconnectStatusCode"] == 1003
    assert [r.event["body"] for r in echo_gateway.invocations.find("$default", cid)] == ["whoami"]


@pytest.mark.timeout(30)
def test_frame_over_32kb_closes_with_1009(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    ws.send("x" * (32 * 1024 + 1))  # one frame: websockets does not fragment
    closed = _closed(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1009
    ctx = echo_gateway.invocations.wait_for("$disconnect", cid)[0].event["requestContext"]
    assert ctx["disconnectStatusCode"] == 1009


@pytest.mark.timeout(30)
def test_fragmented_message_within_limits_is_delivered(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    ws = ws_connect(echo_gateway)
    fragments = ["a" * 32 * 1024, "b" * 32 * 1024, "c" * 32 * 1024, "d" * 32 * 1024]
    ws.send(fragments)  # exactly 128 KB in four 32 KB frames
    assert ws.recv(timeout=5) == "".join(fragments)


@pytest.mark.timeout(30)
def test_message_over_128kb_closes_with_1009(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    echo_gateway.invocations.wait_for("$default", cid)  # whoami is logged
    ws.send(["a" * 32 * 1024] * 4 + ["b"])  # every frame is fine, the message is not
    closed = _closed(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1009
    echo_gateway.invocations.wait_for("$disconnect", cid)
    assert len(echo_gateway.invocations.find("$default", cid)) == 1  # only whoami


@pytest.mark.timeout(30)
def test_idle_timeout_closes_with_1001(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = _echo(gateway_factory, idle_timeout=0.6)
    ws = ws_connect(gw)
    cid = connection_id(ws)
    started = time.perf_counter()
    closed = _closed(ws)
    assert 0.4 <= time.perf_counter() - started < 3
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (
        1001,
        "Going away",
    )
    ctx = gw.invocations.wait_for("$disconnect", cid)[0].event["requestContext"]
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (1001, "Going away")


@pytest.mark.timeout(30)
def test_activity_keeps_the_connection_alive_until_max_duration(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = _echo(gateway_factory, idle_timeout=0.5, max_duration=1.5)
    ws = ws_connect(gw)
    cid = connection_id(ws)
    started = time.perf_counter()
    with pytest.raises(ConnectionClosed) as closed:
        while True:  # a frame every 0.2 s: never idle, but the lifetime runs out
            ws.send("noop")
            time.sleep(0.2)
    lived = time.perf_counter() - started
    assert 1.2 <= lived < 3, lived
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    gw.invocations.wait_for("$disconnect", cid)


@pytest.mark.timeout(30)
def test_stop_closes_sockets_and_runs_disconnect(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = _echo(gateway_factory)
    ws = ws_connect(gw)
    cid = connection_id(ws)
    invocations = gw.invocations
    gw.stop()
    closed = _closed(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 1001
    assert (
        invocations.find("$disconnect", cid)[0].event["requestContext"]["disconnectStatusCode"]
        == 1001
    )


@pytest.mark.timeout(30)
def test_wrong_stage_and_plain_http_are_refused(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    assert echo_gateway.urls is not None
    with pytest.raises(InvalidStatus) as refused:
        ws_connect(echo_gateway.urls.websocket.replace("/api", "/other"))
    assert refused.value.response.status_code == 403
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as plain:
        urllib.request.urlopen(echo_gateway.urls.websocket.replace("ws://", "http://"), timeout=5)
    assert plain.value.code == 426  # Upgrade Required
