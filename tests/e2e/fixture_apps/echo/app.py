"""Fixture app for the gateway e2e tests: echoes messages back through the management API.

Behaviour is driven by the client so one app covers many cases:
connect ``?deny=1`` -> 403, ``?raise=1`` -> handler error, ``?sleep=S`` -> slow connect;
message ``raise`` -> handler error, ``sleep:S`` -> slow handler, ``whoami`` -> own connection id,
``noop`` -> nothing, anything else -> echoed (binary frames echoed as binary).
Connections are stored in the DynamoDB table named by CONNECTIONS_TABLE.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import boto3
from botocore.config import Config
from chalice import Chalice, Response

app = Chalice(app_name="echo-fixture")
app.experimental_feature_flags.update(["WEBSOCKETS"])

# Read at import time on purpose: proves the gateway sets the env before importing.
IMPORT_ENV = {
    k: os.environ.get(k)
    for k in (
        "APIGW_MANAGEMENT_ENDPOINT",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "CONNECTIONS_TABLE",
        "FIXTURE_TOP",
        "FIXTURE_OVERRIDE",
        "AWS_REGION",
        "AUTH_MODE",
    )
}

_clients: dict[str, Any] = {}


def _management() -> Any:
    if "mgmt" not in _clients:
        _clients["mgmt"] = boto3.client(
            "apigatewaymanagementapi",
            endpoint_url=os.environ["APIGW_MANAGEMENT_ENDPOINT"],
            config=Config(retries={"mode": "standard"}),
        )
    return _clients["mgmt"]


def _table() -> Any:
    if "table" not in _clients:
        _clients["table"] = boto3.resource("dynamodb").Table(os.environ["CONNECTIONS_TABLE"])
    return _clients["table"]


@app.on_ws_connect()
def connect(event: Any) -> Any:
    query = event.to_dict().get("queryStringParameters") or {}
    if query.get("deny") == "1":
        return Response(body={"message": "denied"}, status_code=403)
    if query.get("raise") == "1":
        raise RuntimeError("connect failed on purpose")
    if "sleep" in query:
        time.sleep(float(query["sleep"]))
    _table().put_item(Item={"PK": event.connection_id, "connectedAt": int(time.time())})
    return None


@app.on_ws_message()
def message(event: Any) -> None:
    raw = event.to_dict()
    body = raw["body"]
    if body == "raise":
        raise ValueError("message failed on purpose")
    if body.startswith("sleep:"):
        time.sleep(float(body[len("sleep:") :]))
        return
    if body == "noop":
        return
    if body == "whoami":
        _management().post_to_connection(
            ConnectionId=event.connection_id, Data=event.connection_id.encode()
        )
        return
    data = base64.b64decode(body) if raw["isBase64Encoded"] else body.encode("utf-8")
    _management().post_to_connection(ConnectionId=event.connection_id, Data=data)


@app.on_ws_disconnect()
def disconnect(event: Any) -> None:
    _table().delete_item(Key={"PK": event.connection_id})


@app.route("/")
def index() -> dict[str, Any]:
    return {
        "fixture": "echo",
        "top": os.environ.get("FIXTURE_TOP"),
        "override": os.environ.get("FIXTURE_OVERRIDE"),
    }


@app.route("/connections")
def connections() -> dict[str, Any]:
    return {"ids": sorted(item["PK"] for item in _table().scan()["Items"])}
