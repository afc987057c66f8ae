"""The fan-out variants compared side by side, all driven from one process.

- ``SeedLoop``: the seed article's ``onBroadcastAll`` in Python: a paged table ``Scan``
  (``ProjectionExpression=PK``), then one ``PostToConnection`` after another with a boto3
  client (standard retries, like the Go SDK's default), ``DeleteItem`` on 410.
- ``SwitchboardPush``: switchboard's own code path for ``POST /broadcast``:
  ``Switchboard.push`` -> ``Registry.all_connections`` (a Query per ALL shard) ->
  ``Broadcaster.fan_out`` -> ``ManagementApi.post_many`` with the ``async`` transport
  (the default) or ``boto3`` (``MANAGEMENT_TRANSPORT=boto3``, the before of the transport).
- ``RawPoster``: the limit: concurrent raw POSTs to ids known in advance, no registry, no
  signing, requests built beforehand, the same number of keep-alive connections
  (``FANOUT_WORKERS``) as switchboard.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from bench.common import DUMMY_CREDENTIALS, REGION


def tag(number: int) -> str:
    """The marker the clients look for: ``bench#<round>#``."""
    return f"bench#{number}#"


def session() -> Any:
    return boto3.session.Session(region_name=REGION, **DUMMY_CREDENTIALS)


class SeedLoop:
    """Scan the whole table, then post to each connection in turn (the seed design)."""

    name = "seed"

    def __init__(self, table: str, dynamodb_url: str, management_url: str) -> None:
        s = session()
        self.table = table
        self.ddb = s.client("dynamodb", endpoint_url=dynamodb_url)
        # Built once (the Go seed builds one per invocation, which costs Go nearly nothing).
        self.mgmt = s.client(
            "apigatewaymanagementapi",
            endpoint_url=management_url,
            config=Config(retries={"mode": "standard"}),
        )

    def scan(self) -> tuple[list[str], dict[str, Any]]:
        ids: list[str] = []
        stats = {"pages": 0, "scanned": 0, "capacity_units": 0.0}
        params: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": "PK",
            "ReturnConsumedCapacity": "TOTAL",
        }
        while True:
            page = self.ddb.scan(**params)
            stats["pages"] += 1
            stats["scanned"] += page.get("ScannedCount", 0)
            stats["capacity_units"] += page.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)
            for item in page.get("Items", []):
                pk = item["PK"]["S"]
                if pk.startswith("CONN#"):
                    ids.append(pk[5:])
            last = page.get("LastEvaluatedKey")
            if not last:
                return ids, stats
            params["ExclusiveStartKey"] = last

    def payload(self, number: int) -> bytes:
        return json.dumps(
            {
                "type": "broadcast",
                "time": datetime.datetime.now(datetime.UTC).isoformat(),
                "note": f"hello from Lambda via the management endpoint {tag(number)}",
            }
        ).encode()

    def run(self, number: int) -> dict[str, Any]:
        started = time.monotonic()
        ids, stats = self.scan()
        read = time.monotonic() - started
        data = self.payload(number)
        delivered = gone = failed = 0
        for cid in ids:
            try:
                self.mgmt.post_to_connection(ConnectionId=cid, Data=data)
                delivered += 1
            except self.mgmt.exceptions.GoneException:
                gone += 1
                self.ddb.delete_item(
                    TableName=self.table, Key={"PK": {"S": f"CONN#{cid}"}, "SK": {"S": "CONN"}}
                )
            except ClientError:
                failed += 1
        return {
            "read_s": read,
            "recipients": len(ids),
            "delivered": delivered,
            "gone": gone,
            "failed": failed,
            "scanned": stats["scanned"],
        }


class SwitchboardPush:
    """switchboard's broadcast path, exactly as ``POST /broadcast`` runs it."""

    def __init__(
        self,
        table: str,
        management_url: str,
        transport: str = "async",
        workers: int = 64,
        shards: int = 8,
    ) -> None:
        # Imported here: the app's modules read nothing at import, but keep bench imports light.
        from bench.readstats import StatsSession
        from chalicelib.auth import Identity
        from chalicelib.config import Settings
        from chalicelib.wiring import build_switchboard

        self.name = "switchboard" if transport == "async" else "switchboard-boto3"
        settings = Settings(
            table_name=table,
            auth_mode="none",
            management_endpoint=management_url,
            fanout_workers=workers,
            all_shards=shards,
            management_transport=transport,
            log_level="WARNING",
        )
        # DynamoDB's endpoint comes from AWS_ENDPOINT_URL_DYNAMODB, as in the app. The session
        # wraps the registry's client so that its reads report what they cost.
        boto3_session = StatsSession(session())
        self.read_stats = boto3_session.stats
        self.switchboard = build_switchboard(settings, session=boto3_session)
        self.sender = Identity("bench-admin", role="admin")

    def read_registry(self) -> tuple[int, float, dict[str, Any]]:
        """One broadcast's registry read alone: (targets, seconds, stats delta)."""
        registry = self.switchboard.registry
        stats = self.read_stats
        before = (stats.queries, stats.items_examined)
        started = time.monotonic()
        count = sum(1 for _ in registry.all_connections())
        seconds = time.monotonic() - started
        delta = {
            "queries": stats.queries - before[0],
            "scanned": stats.items_examined - before[1],
        }
        return count, seconds, delta

    def run(self, number: int) -> dict[str, Any]:
        report = self.switchboard.push("all", None, {"text": tag(number)}, self.sender)
        return {k: report[k] for k in ("recipients", "delivered", "gone", "failed")}

    def close(self) -> None:
        transport = getattr(self.switchboard.gateway, "_transport", None)
        if transport is not None:
            transport.close()


class RawPoster:
    """The limit: raw keep-alive POSTs from ``concurrency`` connections, nothing else."""

    name = "limit"

    def __init__(self, management_url: str, concurrency: int = 64) -> None:
        split = urlsplit(management_url)
        self.host = split.hostname or "127.0.0.1"
        self.port = split.port or 80
        self.base = split.path.rstrip("/")
        self.concurrency = concurrency
        self.ids: list[str] = []
        self._paths: list[bytes] = []
        self._conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def set_ids(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        self._paths = [
            f"POST {self.base}/@connections/{quote(cid, safe='')} HTTP/1.1\r\n".encode()
            for cid in self.ids
        ]

    def payload(self, number: int) -> bytes:
        from chalicelib import protocol

        return protocol.encode(
            protocol.message_frame("bench-admin", protocol.Scope.ALL, tag(number))
        )

    def run(self, number: int, timeout: float = 120.0) -> dict[str, Any]:
        data = self.payload(number)
        future = asyncio.run_coroutine_threadsafe(self._post_all(data), self._loop)
        ok, failed = future.result(timeout)
        return {"recipients": len(self.ids), "delivered": ok, "gone": 0, "failed": failed}

    def _signed(self, path_line: bytes, data: bytes) -> bytes:
        """One POST signed as botocore signs it: the gateway checks every signature."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        host = f"{self.host}:{self.port}"
        request = AWSRequest(
            method="POST", url=f"http://{host}{path_line.split(b' ')[1].decode()}", data=data
        )
        credentials = Credentials(
            DUMMY_CREDENTIALS["aws_access_key_id"], DUMMY_CREDENTIALS["aws_secret_access_key"]
        )
        SigV4Auth(credentials, "execute-api", REGION).add_auth(request)
        headers = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        head = f"Host: {host}\r\n{headers}Content-Length: {len(data)}\r\n\r\n"
        return path_line + head.encode() + data

    async def _post_all(self, data: bytes) -> tuple[int, int]:
        requests = [self._signed(path, data) for path in self._paths]
        while len(self._conns) < min(self.concurrency, len(requests)):
            self._conns.append(await asyncio.open_connection(self.host, self.port))
        work = iter(range(len(requests)))
        counts = [0, 0]

        async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for index in work:
                writer.write(requests[index])
                head = await reader.readuntil(b"\r\n\r\n")
                counts[0 if head[9:12] == b"200" else 1] += 1
                at = head.find(b"Content-Length: ")
                if at >= 0:
                    length = int(head[at + 16 : head.find(b"\r\n", at)])
                    if length:
                        await reader.readexactly(length)

        await asyncio.gather(*(worker(r, w) for r, w in self._conns[: len(requests)]))
        return counts[0], counts[1]

    def close(self) -> None:
        async def shut() -> None:
            for _, writer in self._conns:
                writer.close()

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
