"""--custom-domain: events carry the custom domain, @connections answers only where AWS would,
and pushes (WebSocket sendRoom and HTTP POST /rooms/{room}/messages) still arrive."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from local_gateway import LocalGateway
from tests.e2e.helpers import REPO_ROOT
from tests.gateways import http as rest
from tests.gateways import table_items
from tests.wsclient import recv_json, send

pytestmark = pytest.mark.timeout(60)

DOMAIN = "chat.example.com"


@pytest.fixture
def gw(gateway_factory: Any) -> LocalGateway:
    return gateway_factory(REPO_ROOT, auth_mode="none", custom_domain=DOMAIN, base_path="v1")


def signed_post(gw: LocalGateway, host: str, path: str, data: bytes) -> int:
    """POST ``data`` to ``http://{host}{path}`` as a SigV4-signing SDK would, delivered to the
    gateway's port (``host`` travels in the Host header, as DNS would have routed it)."""
    request = AWSRequest("POST", f"https://{host}{path}", data=data, headers={"Host": host})
    keys = gw.credentials  # the run's own: the gateway verifies signatures
    SigV4Auth(
        Credentials(keys.access_key_id, keys.secret_access_key), "execute-api", gw.region
    ).add_auth(request)
    conn = http.client.HTTPConnection("127.0.0.1", gw.ws_port_bound, timeout=10)
    try:
        conn.request("POST", path, body=data, headers=dict(request.headers.items()))
        return conn.getresponse().status
    finally:
        conn.close()


def test_pushes_arrive_through_a_custom_domain(gw: LocalGateway, ws_connect: Any) -> None:
    alice, bob = ws_connect(gw, "userId=u_alice"), ws_connect(gw, "userId=u_bob")
    bob_id = send(bob, {"action": "whoami"})["connectionId"]
    connect = gw.invocations.wait_for("$connect", bob_id)[0].event["requestContext"]
    assert (connect["domainName"], connect["stage"]) == (DOMAIN, "api")
    # The app stores the execute-api endpoint, not https://chat.example.com/api.
    stored = {
        i["connectionId"]["S"]: i.get("endpoint", {}).get("S")
        for i in table_items(gw)
        if "connectionId" in i and i["SK"]["S"] == "CONN"  # not its per-user slot item
    }
    assert stored[bob_id] == f"https://{gw.api_id}.execute-api.{gw.region}.amazonaws.com/api"

    for ws in (alice, bob):
        assert send(ws, {"action": "join", "room": "lobby"})["joined"] is True
    entered = recv_json(alice)  # pushed through the stored endpoint too: alice hears bob enter
    assert (entered["type"], entered["event"], entered["userId"]) == ("presence", "enter", "u_bob")
    ack = send(alice, {"action": "sendRoom", "room": "lobby", "text": "over the socket"})
    assert (ack["delivered"], ack["failed"]) == (1, 0)
    assert recv_json(bob)["text"] == "over the socket"
    status, report = rest(gw, "POST", "/rooms/lobby/messages", {"text": "over HTTP"})
    assert status == 200 and (report["delivered"], report["failed"]) == (2, 0)
    assert recv_json(alice)["text"] == recv_json(bob)["text"] == "over HTTP"


def test_connections_answer_at_the_mapping_path_on_the_domain_only(
    gw: LocalGateway, ws_connect: Any
) -> None:
    bob = ws_connect(gw, "userId=u_bob")
    cid = quote(send(bob, {"action": "whoami"})["connectionId"], safe="")
    frame = json.dumps({"type": "pong"}).encode()
    # https://{domainName}/{stage}: what apps derived from the event; AWS refuses it when the
    # mapping path is not the stage.
    assert signed_post(gw, DOMAIN, f"/api/@connections/{cid}", frame) == 403
    assert signed_post(gw, DOMAIN, f"/v1/@connections/{cid}", frame) == 200
    assert recv_json(bob) == {"type": "pong"}
    execute_api = f"{gw.api_id}.execute-api.{gw.region}.amazonaws.com"
    assert signed_post(gw, execute_api, f"/v1/@connections/{cid}", frame) == 403
    assert signed_post(gw, execute_api, f"/api/@connections/{cid}", frame) == 200
    assert recv_json(bob) == {"type": "pong"}
