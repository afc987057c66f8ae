"""A gateway-free ``@connections`` sink in its own process (``python -m bench.sink``).

Answers every ``POST /{stage}/@connections/{id}`` with 200 (keep-alive) after an optional
latency, counts the posts, and drops the bodies. Used where thousands of real WebSockets are
not the point: the broadcaster's profile and the memory of a 10,000-recipient fan-out.

With ``--account-rps`` (and ``--account-burst``) the posts go through the local gateway's
account quota (``local_gateway/token_bucket.py``): past it, 429 ``LimitExceededException``
(``bench/quota.py``).

Commands: {"cmd": "count"} -> {"posts": n, "throttled": n}; {"cmd": "latency", "ms": x};
{"cmd": "quota", "rps": r, "burst": b} (a full new bucket, counters reset; rps null: none).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from typing import Any

from bench.common import command_loop, emit, raise_nofile
from local_gateway.token_bucket import TokenBucket

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\nContent-Length: 0\r\n\r\n"
)
THROTTLED_BODY = b'{"message":"Rate exceeded"}'
THROTTLED = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    b"x-amzn-ErrorType: LimitExceededException\r\n"
    b"x-amzn-RequestId: 00000000-0000-0000-0000-000000000000\r\n"
    b"Content-Length: %d\r\n\r\n" % len(THROTTLED_BODY) + THROTTLED_BODY
)


class Sink:
    def __init__(self) -> None:
        self.posts = 0
        self.throttled = 0
        self.latency = 0.0
        self.quota: TokenBucket | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                at = head.lower().find(b"content-length:")
                length = int(head[at + 15 : head.find(b"\r\n", at)]) if at >= 0 else 0
                if length:
                    await reader.readexactly(length)
                if self.quota is not None and not self.quota.try_take():
                    self.throttled += 1
                    writer.write(THROTTLED)
                    continue
                if self.latency:
                    await asyncio.sleep(self.latency)
                self.posts += 1
                writer.write(RESPONSE)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--account-rps", type=float, default=None)
    parser.add_argument("--account-burst", type=float, default=None)
    args = parser.parse_args()
    raise_nofile(20000)
    sink = Sink()
    sink.latency = args.latency_ms / 1000.0
    if args.account_rps is not None:
        sink.quota = TokenBucket(args.account_rps, args.account_burst)
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(
        asyncio.start_server(sink.handle, "127.0.0.1", 0, backlog=4096)
    )
    port = server.sockets[0].getsockname()[1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def handle(message: dict[str, Any]) -> dict[str, Any]:
        if message.get("cmd") == "count":
            return {"posts": sink.posts, "throttled": sink.throttled}
        if message.get("cmd") == "latency":
            sink.latency = float(message.get("ms", 0.0)) / 1000.0
            return {"latency_ms": sink.latency * 1000}
        if message.get("cmd") == "quota":
            rps = message.get("rps")
            sink.quota = None if rps is None else TokenBucket(float(rps), message.get("burst"))
            sink.posts = sink.throttled = 0
            return {"rps": rps}
        return {"error": f"unknown command {message.get('cmd')!r}"}

    emit({"url": f"http://127.0.0.1:{port}/api", "port": port})
    try:
        command_loop(handle)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


if __name__ == "__main__":
    main()
