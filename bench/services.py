"""Child processes for the fan-out benchmark: the DynamoDB (moto) and the local gateway.

Each runs in its own process, as the services do on AWS, so that none of them competes with
the code under test for one interpreter's GIL:

    python -m bench.services dynamodb            -> {"url": ...}
    python -m bench.services gateway --dynamodb URL -> {"websocket": ..., "management": ...}

Both then answer JSON commands on stdin (see ``command_loop``) until ``quit`` or EOF.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import secrets
from typing import Any

from bench.common import (
    DUMMY_CREDENTIALS,
    PROJECT_DIR,
    REGION,
    command_loop,
    emit,
    raise_nofile,
)


def run_dynamodb(exact_moto: bool = False) -> None:
    from local_gateway import EmbeddedDynamoDB, moto_speedups

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    db = EmbeddedDynamoDB(host="127.0.0.1", port=0, region=REGION, credentials=bench_credentials())
    url = db.start()  # installs moto_speedups
    moto_speedups.enabled = not exact_moto
    emit({"url": url, "partition_queries": moto_speedups.enabled})
    try:
        command_loop(lambda message: {"ok": True})
    finally:
        db.stop()


def bench_credentials() -> Any:
    """The bench's fixed local pair: its processes are short-lived and only it knows them."""
    from local_gateway.sigv4 import Credentials

    return Credentials(
        DUMMY_CREDENTIALS["aws_access_key_id"], DUMMY_CREDENTIALS["aws_secret_access_key"]
    )


def run_gateway(dynamodb_url: str, workers: int) -> None:
    from local_gateway import LocalGateway, Quotas

    raise_nofile(20000)
    gateway = LocalGateway(
        str(PROJECT_DIR),
        host="127.0.0.1",
        ws_port=0,
        rest_port=None,
        dynamodb_endpoint=dynamodb_url,
        region=REGION,
        auth_mode="none",
        # The dev stage names its continuation queue: its jobs are signed with a key, as make run
        # gives the stack one.
        env={"LOG_LEVEL": "WARNING", "CONTINUATION_KEY": secrets.token_urlsafe(48)},
        workers=workers,
        invocation_log_size=64,
        # A benchmark run is long: nothing may time out under it; up to 10,000 clients.
        limits=Quotas(
            idle_timeout=3600.0, close_timeout=2.0, keepalive_timeout=3600.0, max_sockets=20000
        ),
        # The DynamoDB service, the gateway and the bench's own clients share one pair.
        credentials=bench_credentials(),
    )
    urls = gateway.start()

    def handle(message: dict[str, Any]) -> dict[str, Any]:
        cmd = message.get("cmd")
        if cmd == "faults":
            config = gateway.set_faults(latency_ms=float(message.get("latency_ms", 0.0)))
            return {"latency_ms": config.latency_ms}
        if cmd == "ids":
            return {"ids": gateway.connection_ids()}
        if cmd == "stats":
            return {"stats": dataclasses.asdict(gateway.stats())}
        return {"error": f"unknown command {cmd!r}"}

    emit(
        {
            "websocket": urls.websocket,
            "management": urls.management,
            "dynamodb": urls.dynamodb,
            "table": gateway.table_name,
            "stage": gateway.stage,
            "port": gateway.ws_port_bound,
        }
    )
    try:
        command_loop(handle)
    finally:
        gateway.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("service", choices=["dynamodb", "gateway"])
    parser.add_argument("--dynamodb", default="")
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument(
        "--exact-moto", action="store_true", help="moto's own Query (walks the whole table)"
    )
    args = parser.parse_args()
    if args.service == "dynamodb":
        run_dynamodb(args.exact_moto)
    else:
        run_gateway(args.dynamodb, args.workers)


if __name__ == "__main__":
    main()
