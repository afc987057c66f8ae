"""Smoke-test a packaged deployment.zip: unpack it and run the chat flow on the local gateway.

    python -m deploy.smoke [--stage dev | --zip build/package/dev/deployment.zip]

The handlers come from the unpacked zip only: a child Python runs with the unpacked folder
first on its path, so ``app``, ``chalicelib`` (and its schema.json), ``chalice`` and ``jwt``
must all load from there, as on Lambda; the child checks where each was loaded from. boto3
and botocore come from the environment, as the Lambda runtime provides them. The local
gateway (this repo's ``local_gateway``) serves the WebSocket and management APIs and an
embedded DynamoDB with the table created from the zip's own schema.json.

The flow: two clients connect with ``?userId``, one sends the seed ``sendMessage`` frame, the
other receives it and the sender gets its ack; closing a socket runs ``$disconnect``, which
removes its registry item. Nothing reaches AWS: dummy credentials, local endpoints.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TABLE = "switchboard-smoke-connections"
# Modules that must come from the zip (what Lambda imports from /var/task).
FROM_ZIP = (
    "app",
    "chalicelib",
    "chalicelib.wiring",
    "chalicelib.schema",
    "chalicelib.auth",
    "chalice",
    "jwt",
)


class SmokeError(RuntimeError):
    pass


def run(zip_path: Path, timeout: float = 90.0) -> dict[str, Any]:
    """Unpack ``zip_path`` and run the flow in a child Python; its report, or SmokeError."""
    with tempfile.TemporaryDirectory(prefix="switchboard-zip-") as tmp:
        unpacked = Path(tmp) / "task"
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(unpacked)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JWT_"))}
        env.update(
            {
                # The unpacked zip first (like /var/task), then this repo for local_gateway.
                "PYTHONPATH": os.pathsep.join([str(unpacked), str(ROOT)]),
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        cmd = [sys.executable, "-P", "-m", "deploy.smoke", "--child", str(unpacked)]
        result = subprocess.run(
            cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines:
            raise SmokeError(
                f"smoke flow failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        report: dict[str, Any] = json.loads(lines[-1])
        return report


def _child(unpacked: str) -> dict[str, Any]:
    """Runs in the child: the gateway on the unpacked zip and two real WebSocket clients."""
    import boto3
    from websockets.sync.client import connect

    from local_gateway import LocalGateway, Quotas

    started = time.monotonic()
    gateway = LocalGateway(
        unpacked,
        ws_port=0,
        rest_port=None,  # Chalice's local REST server is not in the zip, only chalice.app
        auth_mode="none",
        env={"CONNECTIONS_TABLE": TABLE, "LOG_LEVEL": "WARNING"},
        limits=Quotas(close_timeout=1.0),
    )
    with gateway:
        urls = gateway.urls
        assert urls is not None
        ddb = boto3.client("dynamodb", endpoint_url=urls.dynamodb, region_name="us-east-1")

        def item(cid: str) -> Any:
            key = {"PK": {"S": f"CONN#{cid}"}, "SK": {"S": "CONN"}}
            return ddb.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item")

        def recv(ws: Any) -> dict[str, Any]:
            frame: dict[str, Any] = json.loads(ws.recv(timeout=10))
            return frame

        def open_ws(user: str) -> Any:
            return connect(f"{urls.websocket}?userId={user}", open_timeout=10, ping_interval=None)

        with open_ws("u_1") as alice, open_ws("u_2") as bob:
            alice.send(json.dumps({"action": "whoami"}))
            alice_id = recv(alice)["connectionId"]
            bob.send(json.dumps({"action": "whoami"}))
            bob_frame = recv(bob)
            bob_id = bob_frame["connectionId"]
            assert bob_frame["userId"] == "u_2", bob_frame
            assert item(alice_id) and item(bob_id), "connections not registered"

            seed = {"action": "sendMessage", "targetUserId": "u_2", "text": "hi from the zip"}
            alice.send(json.dumps({**seed, "ref": 1}))
            delivered = recv(bob)
            assert delivered["type"] == "message", delivered
            assert delivered["from"] == "u_1" and delivered["text"] == seed["text"], delivered
            ack = recv(alice)
            assert ack["type"] == "ack" and ack["delivered"] == 1, ack

            alice.close()
            gateway.invocations.wait_for("$disconnect", connection_id=alice_id, timeout=10)
            assert item(alice_id) is None, "$disconnect left the connection in the registry"
            assert item(bob_id) is not None
        gateway.invocations.wait_for("$disconnect", connection_id=bob_id, timeout=10)
        assert item(bob_id) is None
        # The message log keeps the stream (its head and the message) by design; connection
        # and membership items must all be gone.
        items = ddb.scan(TableName=TABLE, ConsistentRead=True)["Items"]
        remaining = [i for i in items if not i["PK"]["S"].startswith("STREAM#")]
        assert not remaining, f"{len(remaining)} registry items left after both disconnected"
        logged = [i for i in items if i["SK"]["S"].startswith("SEQ#")]
        assert len(logged) == 1, f"expected the one message in the log, found {len(logged)}"

    root = os.path.realpath(unpacked) + os.sep
    # Some are imported only when first used (PyJWT with AUTH_MODE=jwt, the transport at the
    # first post: a cold start's cost): import each now, to see where it comes from.
    origins = {name: getattr(importlib.import_module(name), "__file__", None) for name in FROM_ZIP}
    outside = {
        k: v for k, v in origins.items() if not v or not os.path.realpath(v).startswith(root)
    }
    assert not outside, f"loaded from outside the zip: {outside}"
    return {
        "ok": True,
        "delivered": delivered["text"],
        "ack": {k: ack[k] for k in ("delivered", "failed")},
        "registry_items_left": len(remaining),
        "logged_messages": len(logged),
        "modules_from_zip": sorted(origins),
        "seconds": round(time.monotonic() - started, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the chat flow on a packaged zip.")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--zip", help="deployment.zip (default: package the stage first)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child)))
        return 0
    if args.zip:
        zip_path = Path(args.zip)
    else:
        from deploy.package import package

        zip_path = package(args.stage, quiet=True).zip_path
    try:
        report = run(zip_path)
    except SmokeError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{zip_path}: {json.dumps(report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
