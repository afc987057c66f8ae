"""The management endpoint under load: 1,000 concurrent POSTs, none lost, none slow."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import quote

import pytest

from local_gateway import LocalGateway
from tests.e2e.helpers import connection_id
from tests.gateways import signed_headers
from tests.wsclient import WsConnect

CONCURRENCY = 1000


async def _post_all(gateway: LocalGateway, cid: str) -> list[bytes]:
    path = f"/api/@connections/{quote(cid, safe='')}"

    async def one(i: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.ws_port_bound)
        body = b"m%d" % i
        headers = signed_headers(gateway, "POST", path, body)
        writer.write(
            f"POST {path} HTTP/1.1\r\n".encode()
            + b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        return head.split(b"\r\n", 1)[0]

    return await asyncio.gather(*(one(i) for i in range(CONCURRENCY)))


@pytest.mark.timeout(60)
def test_thousand_concurrent_posts(echo_gateway: LocalGateway, ws_connect: WsConnect) -> None:
    ws = ws_connect(echo_gateway, max_queue=None)
    cid = connection_id(ws)
    started = time.perf_counter()
    statuses = asyncio.run(_post_all(echo_gateway, cid))
    elapsed = time.perf_counter() - started
    assert set(statuses) == {b"HTTP/1.1 200 OK"}
    got = {ws.recv(timeout=10) for _ in range(CONCURRENCY)}
    assert got == {f"m{i}" for i in range(CONCURRENCY)}
    assert elapsed < 15, f"{CONCURRENCY} concurrent POSTs took {elapsed:.1f}s"
    assert echo_gateway.stats().posts_ok >= CONCURRENCY
