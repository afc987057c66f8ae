"""The @connections management API as boto3 sees it: POST, GET, DELETE, errors and faults."""

from __future__ import annotations

import http.client
import socket
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore import UNSIGNED
from botocore.exceptions import ClientError
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

from local_gateway import FaultConfig, LocalGateway
from tests.e2e.helpers import ECHO_APP, connection_id
from tests.gateways import GatewayFactory, signed_headers
from tests.wsclient import WsConnect

NO_RETRY = {"mode": "standard", "total_max_attempts": 1}


def _client(gw: LocalGateway, **config: Any) -> Any:
    return gw.management_client(retries=NO_RETRY, **config)


@pytest.mark.timeout(30)
def test_post_get_delete_then_gone(echo_gateway: LocalGateway, ws_connect: WsConnect) -> None:
    ws = ws_connect(echo_gateway, user_agent_header="e2e-agent")
    cid = connection_id(ws)
    client = _client(echo_gateway)

    client.post_to_connection(ConnectionId=cid, Data=b"from the server")
    assert ws.recv(timeout=5) == "from the server"

    info = client.get_connection(ConnectionId=cid)
    assert info["Identity"] == {"SourceIp": "127.0.0.1", "UserAgent": "e2e-agent"}
    now = datetime.now(UTC)
    assert abs((now - info["ConnectedAt"]).total_seconds()) < 30
    assert info["LastActiveAt"] >= info["ConnectedAt"]

    client.delete_connection(ConnectionId=cid)
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
    ctx = echo_gateway.invocations.wait_for("$disconnect", cid)[0].event["requestContext"]
    # AWS's $disconnect after DeleteConnection (issue #17's audit of public captures).
    assert (ctx["disconnectStatusCode"], ctx["disconnectReason"]) == (
        1000,
        "Connection Closed Normally",
    )

    with pytest.raises(client.exceptions.GoneException):
        client.post_to_connection(ConnectionId=cid, Data=b"too late")
    with pytest.raises(client.exceptions.GoneException):
        client.get_connection(ConnectionId=cid)
    with pytest.raises(client.exceptions.GoneException):
        client.delete_connection(ConnectionId=cid)


@pytest.mark.timeout(30)
def test_post_to_unknown_connection_is_gone(echo_gateway: LocalGateway) -> None:
    client = _client(echo_gateway)
    with pytest.raises(client.exceptions.GoneException) as err:
        client.post_to_connection(ConnectionId="AAAAAAAAAAAAAAA=", Data=b"x")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 410
    assert (
        err.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amzn-errortype"] == "GoneException"
    )


@pytest.mark.timeout(30)
def test_post_text_and_binary_frames(echo_gateway: LocalGateway, ws_connect: WsConnect) -> None:
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    client = _client(echo_gateway)
    client.post_to_connection(ConnectionId=cid, Data="ünïcode".encode())
    assert ws.recv(timeout=5) == "ünïcode"  # valid UTF-8: a text frame
    client.post_to_connection(ConnectionId=cid, Data=b"\xff\xfe\x00")
    assert ws.recv(timeout=5) == b"\xff\xfe\x00"  # not UTF-8: a binary frame


@pytest.mark.timeout(30)
def test_post_payload_limit_413(echo_gateway: LocalGateway, ws_connect: WsConnect) -> None:
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    client = _client(echo_gateway)
    client.post_to_connection(ConnectionId=cid, Data=b"a" * 131072)  # exactly the limit
    assert len(ws.recv(timeout=5)) == 131072
    with pytest.raises(client.exceptions.PayloadTooLargeException) as err:
        client.post_to_connection(ConnectionId=cid, Data=b"a" * 131073)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def _frames_until_fin(sock: socket.socket, proto: ClientProtocol) -> list[Frame]:
    frames: list[Frame] = []
    while not frames or not frames[-1].fin:
        data = sock.recv(65536)
        assert data, "the gateway closed the socket"
        proto.receive_data(data)
        frames += [e for e in proto.events_received() if isinstance(e, Frame)]
    return frames


@pytest.mark.timeout(30)
def test_post_over_32kb_arrives_in_frames_of_at_most_32kb(echo_gateway: LocalGateway) -> None:
    """Quotas page: a message over 32 KB "must be split into multiple frames, each 32 KB or
    smaller. This applies to @connections commands"."""
    assert echo_gateway.urls is not None
    proto = ClientProtocol(parse_uri(echo_gateway.urls.websocket))
    with socket.create_connection(("127.0.0.1", echo_gateway.ws_port_bound), timeout=5) as sock:
        proto.send_request(proto.connect())
        sock.sendall(b"".join(proto.data_to_send()))
        while not any(isinstance(e, Response) for e in proto.events_received()):
            proto.receive_data(sock.recv(65536))
        proto.send_text(b"whoami")
        sock.sendall(b"".join(proto.data_to_send()))
        cid = b"".join(f.data for f in _frames_until_fin(sock, proto)).decode()
        payload = ("é" * 50_000).encode()  # 100,000 bytes; 2-byte characters straddle frames
        _client(echo_gateway).post_to_connection(ConnectionId=cid, Data=payload)
        frames = _frames_until_fin(sock, proto)
    assert len(frames) == 4
    assert all(len(f.data) <= 32 * 1024 for f in frames)
    assert frames[0].opcode is Opcode.TEXT
    assert all(f.opcode is Opcode.CONT for f in frames[1:])
    assert b"".join(f.data for f in frames) == payload


@pytest.mark.timeout(30)
def test_unsigned_requests_are_forbidden(echo_gateway: LocalGateway, ws_connect: WsConnect) -> None:
    cid = connection_id(ws_connect(echo_gateway))
    unsigned = _client(echo_gateway, signature_version=UNSIGNED)
    with pytest.raises(unsigned.exceptions.ForbiddenException):
        unsigned.post_to_connection(ConnectionId=cid, Data=b"x")

    conn = http.client.HTTPConnection("127.0.0.1", echo_gateway.ws_port_bound, timeout=5)
    conn.request("POST", f"/api/@connections/{cid}", body=b"x")
    resp = conn.getresponse()
    assert resp.status == 403
    assert resp.getheader("x-amzn-ErrorType") == "ForbiddenException"
    assert b"message" in resp.read()
    # Unknown paths on the execute-api host are 403 too.
    conn.request("GET", "/nope", headers={"Authorization": "AWS4-HMAC-SHA256 Credential=x"})
    resp = conn.getresponse()
    assert resp.status == 403 and resp.read()
    conn.close()


@pytest.mark.timeout(30)
def test_keep_alive_many_requests_on_one_connection(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    conn = http.client.HTTPConnection("127.0.0.1", echo_gateway.ws_port_bound, timeout=5)
    path = f"/api/@connections/{cid.replace('/', '%2F')}"
    for i in range(20):
        body = b"m%d" % i
        conn.request(
            "POST", path, body=body, headers=signed_headers(echo_gateway, "POST", path, body)
        )
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        resp.read()
    conn.close()
    assert [ws.recv(timeout=5) for _ in range(20)] == [f"m{i}" for i in range(20)]


@pytest.mark.timeout(30)
def test_fault_injection_429_500_and_latency(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = gateway_factory(
        ECHO_APP, schema_path=str(ECHO_APP / "schema.json"), faults=FaultConfig(throttle_rate=1.0)
    )
    ws_connect(gw, max_queue=None)  # never stops reading, so closing it stays quick
    [cid] = gw.connection_ids()  # not "whoami": the app's own POST would be throttled too
    client = _client(gw)
    with pytest.raises(client.exceptions.LimitExceededException) as throttled:
        client.post_to_connection(ConnectionId=cid, Data=b"x")
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429

    gw.set_faults(throttle_rate=0.0, error_rate=1.0)
    with pytest.raises(ClientError) as failed:
        client.post_to_connection(ConnectionId=cid, Data=b"x")
    assert failed.value.response["Error"]["Code"] == "InternalServerErrorException"
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500

    gw.set_faults(error_rate=0.0, latency_ms=300)
    started = time.perf_counter()
    client.get_connection(ConnectionId=cid)
    assert time.perf_counter() - started >= 0.3

    # A seeded mix is reproducible.
    def outcomes() -> list[str]:
        gw.set_faults(latency_ms=0, throttle_rate=0.3, error_rate=0.2, seed=42)
        seen = []
        for _ in range(40):
            try:
                client.post_to_connection(ConnectionId=cid, Data=b"y")
                seen.append("ok")
            except ClientError as exc:
                seen.append(exc.response["Error"]["Code"])
        return seen

    first = outcomes()
    assert first == outcomes()
    assert {"ok", "LimitExceededException", "InternalServerErrorException"} == set(first)


@pytest.mark.timeout(30)
def test_standard_retries_ride_through_throttling(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    """What the broadcaster relies on: botocore standard mode retries 429 by itself."""
    gw = gateway_factory(
        ECHO_APP, schema_path=str(ECHO_APP / "schema.json"),
        faults=FaultConfig(throttle_rate=0.25, seed=6),  # one 429, on the 4th POST
    )  # fmt: skip
    ws = ws_connect(gw)
    cid = connection_id(ws)
    client = gw.management_client(retries={"mode": "standard", "max_attempts": 8})
    for i in range(6):
        client.post_to_connection(ConnectionId=cid, Data=b"r%d" % i)
    assert [ws.recv(timeout=5) for _ in range(6)] == [f"r{i}" for i in range(6)]
    assert gw.stats().throttled == 1


@pytest.mark.timeout(60)
def test_full_client_buffer_answers_429(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = gateway_factory(
        ECHO_APP, schema_path=str(ECHO_APP / "schema.json"), send_buffer_limit=256 * 1024
    )
    # max_queue=1: the client stops reading its socket once one message is pending.
    ws = ws_connect(gw, max_queue=1, close_timeout=0.2)
    cid = connection_id(ws)
    client = _client(gw)
    chunk = b"z" * 131072
    with pytest.raises(client.exceptions.LimitExceededException):
        for _ in range(2000):  # kernel socket buffers absorb some MB first
            client.post_to_connection(ConnectionId=cid, Data=chunk)
    assert gw.stats().throttled == 1
