"""Child process holding N WebSocket clients of the local gateway (``python -m bench.clients URL``).

The clients only listen. Every benchmark message carries a tag ``bench#<round>#``; for each
round the process counts arrivals and remembers the first and the last arrival time on the
system's monotonic clock (``time.monotonic``, CLOCK_MONOTONIC: the same clock in every process
of the machine, so the driver can subtract its own start time).

Commands (JSON lines on stdin):
    {"cmd": "grow", "total": N, "timeout": s}      connect until N clients are open
    {"cmd": "expect", "round": r, "count": n, "timeout": s}
        answers {"ok": true} at once, then {"round": r, "count": .., "first": .., "last": ..,
        "complete": bool} when n clients got round r's message, or when the timeout passes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import threading
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.common import emit, raise_nofile

TAG = "bench#"
_emit_lock = threading.Lock()


def _emit(obj: dict[str, Any]) -> None:
    with _emit_lock:
        emit(obj)


class Clients:
    def __init__(self, url: str, parallel: int) -> None:
        self.url = url
        self.parallel = parallel
        self.sockets: list[ClientConnection] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.rounds: dict[int, list[float]] = {}
        self.waiters: dict[int, tuple[int, asyncio.Future[None]]] = {}
        self.closed = 0
        self.next_user = 0

    async def grow(self, total: int, timeout: float) -> dict[str, Any]:
        started = time.monotonic()
        deadline = started + timeout
        failures = 0
        slots = asyncio.Semaphore(self.parallel)

        async def open_one(n: int) -> None:
            nonlocal failures
            async with slots:
                if time.monotonic() > deadline:
                    failures += 1
                    return
                try:
                    ws = await connect(
                        f"{self.url}?userId=u_{n:05d}",
                        ping_interval=None,
                        compression=None,
                        open_timeout=min(30.0, max(1.0, deadline - time.monotonic())),
                        close_timeout=1,
                    )
                except (OSError, TimeoutError, Exception):  # noqa: BLE001 - counted
                    failures += 1
                    return
                self.sockets.append(ws)
                self.tasks.append(asyncio.create_task(self._listen(ws)))

        wanted = max(0, total - len(self.sockets))
        first = self.next_user
        self.next_user += wanted
        await asyncio.gather(*(open_one(first + i) for i in range(wanted)))
        return {
            "open": len(self.sockets),
            "failures": failures,
            "seconds": round(time.monotonic() - started, 3),
        }

    async def _listen(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._on_message(message if isinstance(message, str) else message.decode())
        except Exception:  # noqa: BLE001 - a dropped client is counted, not fatal
            pass
        self.closed += 1

    def _on_message(self, message: str) -> None:
        now = time.monotonic()
        start = message.find(TAG)
        if start < 0:
            return
        start += len(TAG)
        end = message.find("#", start)
        try:
            number = int(message[start:end])
        except ValueError:
            return
        state = self.rounds.get(number)
        if state is None:
            state = self.rounds[number] = [0.0, now, now]
        state[0] += 1
        state[2] = now
        waiter = self.waiters.get(number)
        if waiter is not None and state[0] >= waiter[0] and not waiter[1].done():
            waiter[1].set_result(None)

    async def expect(self, number: int, count: int, timeout: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters[number] = (count, future)
        state = self.rounds.get(number)
        if state is not None and state[0] >= count:
            future.set_result(None)

        async def report() -> None:
            try:
                await asyncio.wait_for(future, timeout)
            except TimeoutError:
                pass
            state = self.rounds.get(number, [0.0, 0.0, 0.0])
            self.waiters.pop(number, None)
            _emit(
                {
                    "round": number,
                    "count": int(state[0]),
                    "first": state[1],
                    "last": state[2],
                    "complete": state[0] >= count,
                    "closed": self.closed,
                }
            )

        asyncio.get_running_loop().create_task(report())

    async def close(self) -> None:
        for ws in self.sockets:
            ws.transport.abort()  # no close handshakes: the gateway goes away next anyway


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--parallel", type=int, default=64, help="handshakes at once")
    args = parser.parse_args()
    raise_nofile(20000)
    loop = asyncio.new_event_loop()
    clients = Clients(args.url, args.parallel)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    _emit({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        cmd = message.get("cmd")
        try:
            if cmd == "quit":
                break
            if cmd == "grow":
                timeout = float(message.get("timeout", 120))
                _emit(run(clients.grow(int(message["total"]), timeout), timeout + 30))
            elif cmd == "expect":
                run(
                    clients.expect(
                        int(message["round"]),
                        int(message["count"]),
                        float(message.get("timeout", 60)),
                    ),
                    10,
                )
                _emit({"ok": True})
            else:
                _emit({"error": f"unknown command {cmd!r}"})
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            _emit({"error": f"{type(exc).__name__}: {exc}"})
    try:
        run(clients.close(), 10)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


if __name__ == "__main__":
    main()
