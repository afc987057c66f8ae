"""The local gateway on a developer's machine: only the app can post to @connections or write
its table, only its own pages (or non-browser clients) may connect, and slow or silent
sockets cannot starve a real handshake."""

from __future__ import annotations

import socket
import threading
import time

import boto3
import pytest
from botocore.exceptions import ClientError
from websockets.exceptions import InvalidStatus

from local_gateway import LocalGateway
from tests.e2e.helpers import ECHO_APP, connection_id
from tests.gateways import GatewayFactory, signed_headers
from tests.wsclient import WsConnect, open_ws

HANDSHAKE = (
    "GET /api HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def raw_socket(gw: LocalGateway) -> socket.socket:
    return socket.create_connection(("127.0.0.1", gw.ws_port_bound), timeout=5)


def status_line(sock: socket.socket) -> bytes:
    return sock.recv(4096).split(b"\r\n", 1)[0]


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """True if the gateway closes ``sock`` (EOF or reset) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def echo(gateway_factory: GatewayFactory, **options: object) -> LocalGateway:
    return gateway_factory(ECHO_APP, schema_path=str(ECHO_APP / "schema.json"), **options)


# -- SigV4 on @connections and on the embedded DynamoDB ---------------------------------------


@pytest.mark.timeout(30)
def test_a_forged_signature_is_refused_with_invalid_signature(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    ws = ws_connect(echo_gateway)
    cid = connection_id(ws)
    assert echo_gateway.urls is not None
    creds = echo_gateway.credentials
    for key_id, secret, error_type in [
        (creds.access_key_id, "guessed", "InvalidSignatureException"),
        ("testing", "testing", "UnrecognizedClientException"),
    ]:
        forger = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=echo_gateway.urls.management,
            region_name=echo_gateway.region,
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )
        with pytest.raises(ClientError) as info:
            forger.post_to_connection(ConnectionId=cid, Data=b"forged")
        assert info.value.response["Error"]["Code"] == error_type
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    echo_gateway.management_client().post_to_connection(ConnectionId=cid, Data=b"real")
    assert ws.recv(timeout=5) == "real"  # the forged posts never arrived


@pytest.mark.timeout(30)
def test_the_app_gets_credentials_of_this_run_and_dynamodb_refuses_others(
    echo_gateway: LocalGateway, ws_connect: WsConnect
) -> None:
    env = echo_gateway.environment
    assert env["AWS_ACCESS_KEY_ID"] == echo_gateway.credentials.access_key_id != "testing"
    assert env["AWS_SECRET_ACCESS_KEY"] == echo_gateway.credentials.secret_access_key
    cid = connection_id(ws_connect(echo_gateway))
    assert echo_gateway.urls is not None and echo_gateway.table_name is not None
    intruder = boto3.client(
        "dynamodb",
        endpoint_url=echo_gateway.urls.dynamodb,
        region_name=echo_gateway.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    key = {"PK": {"S": cid}}
    with pytest.raises(ClientError) as info:
        intruder.update_item(
            TableName=echo_gateway.table_name,
            Key=key,
            UpdateExpression="SET #r = :admin",
            ExpressionAttributeNames={"#r": "role"},
            ExpressionAttributeValues={":admin": {"S": "admin"}},
        )
    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
    items = echo_gateway.dynamodb_client().scan(TableName=echo_gateway.table_name)["Items"]
    assert [item.get("role") for item in items] == [None]


# -- Origin and Host ---------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_only_allowed_origins_may_open_a_websocket(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = echo(gateway_factory, allowed_origins=["https://trusted.example"])
    assert gw.urls is not None and gw.urls.rest is not None
    with pytest.raises(InvalidStatus) as info:
        open_ws(gw, origin="https://evil.example")
    assert info.value.response.status_code == 403
    for origin in (
        gw.urls.rest,
        gw.urls.rest.replace("127.0.0.1", "localhost"),
        "https://trusted.example",
        None,
    ):
        ws = ws_connect(gw, origin=origin)
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"


@pytest.mark.timeout(30)
def test_a_foreign_host_is_refused_dns_rebinding(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = echo(gateway_factory, allowed_hosts=["devbox.lan"])
    port = gw.ws_port_bound
    for host, expected in [
        (f"rebind.evil.example:{port}", b"HTTP/1.1 403 Forbidden"),
        (f"localhost:{port}", b"HTTP/1.1 101 Switching Protocols"),
        ("devbox.lan", b"HTTP/1.1 101 Switching Protocols"),
    ]:
        with raw_socket(gw) as sock:
            sock.sendall(HANDSHAKE.format(host=host).encode())
            assert status_line(sock) == expected, host
    # The management API too: a page that rebinds its name cannot reach it either.
    cid = connection_id(ws_connect(gw))
    path = f"/api/@connections/{cid}"
    headers = {**signed_headers(gw, "GET", path), "Host": f"rebind.evil.example:{port}"}
    with raw_socket(gw) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"GET {path} HTTP/1.1\r\n{head}\r\n".encode())
        assert status_line(sock) == b"HTTP/1.1 403 Forbidden"


@pytest.mark.timeout(30)
def test_the_rest_port_refuses_a_foreign_host_dns_rebinding(
    gateway_factory: GatewayFactory,
) -> None:
    """The REST API (Chalice's local server) applies the WebSocket port's Host allow-list: a
    rebinding page could otherwise read users' messages and broadcast through it."""
    gw = echo(gateway_factory, allowed_hosts=["devbox.lan"])
    assert gw.urls is not None and gw.urls.rest is not None
    port = int(gw.urls.rest.rsplit(":", 1)[1])
    for host, expected in [
        (f"attacker.example:{port}", b"HTTP/1.1 403 Forbidden"),
        ("attacker.example", b"HTTP/1.1 403 Forbidden"),
        ("", b"HTTP/1.1 403 Forbidden"),  # no Host names nothing
        (f"127.0.0.1:{port}", b"HTTP/1.1 200 OK"),
        (f"localhost:{port}", b"HTTP/1.1 200 OK"),
        ("devbox.lan", b"HTTP/1.1 200 OK"),
    ]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            head = f"Host: {host}\r\n" if host else ""
            sock.sendall(f"GET /connections HTTP/1.1\r\n{head}Connection: close\r\n\r\n".encode())
            assert status_line(sock) == expected, host


# -- slow and silent sockets -------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_slowloris_is_dropped_after_the_head_timeout_and_a_handshake_still_succeeds(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = echo(gateway_factory, head_timeout=1.5)
    sock = raw_socket(gw)
    stop = threading.Event()
    started = time.monotonic()

    def drip() -> None:
        # One header byte at a time, never finishing the head.
        for byte in HANDSHAKE.format(host=f"127.0.0.1:{gw.ws_port_bound}").encode():
            if stop.wait(0.25):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    dripper = threading.Thread(target=drip)
    dripper.start()
    ws = ws_connect(gw)  # while the slowloris drips
    ws.send("hi")
    assert ws.recv(timeout=5) == "hi"
    try:
        assert closed_within(sock, 5), "slowloris socket still open after the head timeout"
        assert 1.0 < time.monotonic() - started < 4.0
    finally:
        stop.set()
        dripper.join()
        sock.close()


@pytest.mark.timeout(30)
def test_idle_keep_alive_http_connections_are_closed(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = echo(gateway_factory, keepalive_timeout=0.5)
    cid = connection_id(ws_connect(gw))
    path = f"/api/@connections/{cid}"
    with raw_socket(gw) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers(gw, "GET", path).items())
        sock.sendall(f"GET {path} HTTP/1.1\r\n{head}\r\n".encode())
        assert status_line(sock) == b"HTTP/1.1 200 OK"
        started = time.monotonic()
        assert closed_within(sock, 5)
        assert 0.3 < time.monotonic() - started < 3


@pytest.mark.timeout(30)
def test_silent_sockets_beyond_the_cap_do_not_starve_a_handshake(
    gateway_factory: GatewayFactory, ws_connect: WsConnect
) -> None:
    gw = echo(gateway_factory, max_sockets=5)
    silent = [raw_socket(gw) for _ in range(20)]
    try:
        ws = ws_connect(gw)
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        # Each new socket made room by dropping the longest-silent one.
        assert sum(closed_within(s, 0.05) for s in silent) >= 16
        # With every place taken by open WebSockets, a new socket is closed at once.
        held = [ws_connect(gw) for _ in range(4)]
        with raw_socket(gw) as extra:
            assert closed_within(extra, 2)
        assert all(h.protocol.state.name == "OPEN" for h in held)
    finally:
        for sock in silent:
            sock.close()
