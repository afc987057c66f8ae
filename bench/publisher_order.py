"""Per-publisher order: what sending one frame at a time per stream costs, and what it buys.

``python -m bench.publisher_order``, against the local gateway in this process (the app's real
handlers, embedded DynamoDB):

API Gateway invokes the integration once per frame as frames arrive, so two frames of one
connection can run in concurrent invocations and reach the log in either order (DESIGN.md, "A
connection's frames are not serialized"). One client sends ``n`` ``sendRoom`` frames to one
room two ways:

- **pipelined**: all ``n`` back to back, then the ``n`` acks;
- **one in flight**: the next frame after the previous one's ack (the rule docs/RESUME.md
  gives clients that need send order).

For each: messages per second, and the inversions in the log (pairs sent as ``i < j`` whose
seqs came out ``seq_i > seq_j``, read from the acks: each ack carries its frame's ``ref``).
The per-connection frame rate limit is raised for the run (``MESSAGE_RATE``), so it is the
pipeline, not the limit, that is measured.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import PROJECT_DIR, RESULTS_DIR

ROOM = "order"


def _inversions(seqs: list[int]) -> int:
    return sum(1 for i in range(len(seqs)) for j in range(i + 1, len(seqs)) if seqs[i] > seqs[j])


def _acks(ws: Any, n: int) -> dict[int, int]:
    """ref -> seq of the next ``n`` acks (other frames passed over)."""
    got: dict[int, int] = {}
    while len(got) < n:
        frame = json.loads(ws.recv(timeout=60))
        if frame.get("type") == "ack" and "seq" in frame:
            got[int(frame["ref"])] = int(frame["seq"])
        elif frame.get("type") == "error":
            raise RuntimeError(f"send refused: {frame}")
    return got


def _frame(i: int) -> str:
    return json.dumps({"action": "sendRoom", "room": ROOM, "text": f"m{i}", "ref": i})


def _pipelined(ws: Any, n: int) -> tuple[float, list[int]]:
    started = time.perf_counter()
    for i in range(n):
        ws.send(_frame(i))
    acks = _acks(ws, n)
    return time.perf_counter() - started, [acks[i] for i in range(n)]


def _one_in_flight(ws: Any, n: int) -> tuple[float, list[int]]:
    started = time.perf_counter()
    seqs = []
    for i in range(n):
        ws.send(_frame(i))
        seqs.append(_acks(ws, 1)[i])
    return time.perf_counter() - started, seqs


def measure(n: int = 100, rounds: int = 3, progress: Any = print) -> dict[str, Any]:
    from websockets.sync.client import connect

    from local_gateway import LocalGateway

    env = {"MESSAGE_RATE": "100000", "MESSAGE_BURST": "100000", "LOG_LEVEL": "WARNING"}
    env["CONTINUATION_KEY"] = secrets.token_urlsafe(48)  # as make run gives the stack one
    gateway = LocalGateway(str(PROJECT_DIR), ws_port=0, rest_port=0, auth_mode="none", env=env)
    gateway.start()
    out: dict[str, Any] = {"n": n, "rounds": rounds}
    try:
        assert gateway.urls is not None
        with connect(gateway.urls.websocket + "?userId=u_pub", proxy=None) as ws:
            ws.send(json.dumps({"action": "join", "room": ROOM}))
            json.loads(ws.recv(timeout=30))
            _one_in_flight(ws, 5)  # warm: imports, connections, caches
            for name, run in (("pipelined", _pipelined), ("one_in_flight", _one_in_flight)):
                rows = [run(ws, n) for _ in range(rounds)]
                seconds = sorted(r[0] for r in rows)[len(rows) // 2]
                out[name] = {
                    "per_s": n / seconds,
                    "ms_per_message": seconds * 1000 / n,
                    "inversions": [_inversions(r[1]) for r in rows],
                }
                progress(f"  {name}: {n / seconds:.0f} msg/s, inversions {out[name]['inversions']}")
    finally:
        gateway.stop()
    return out


def markdown(result: dict[str, Any]) -> str:
    pipelined, serial = result["pipelined"], result["one_in_flight"]
    return "\n".join(
        [
            "## Per-publisher order (local gateway, one connection, one room)",
            "",
            f"{result['n']} `sendRoom` frames, {result['rounds']} rounds (median time; the"
            " inversions of each round: pairs logged out of the order they were sent):",
            "",
            "| sending | messages/s | ms per message | inversions per round |",
            "|---|---:|---:|---|",
            f"| pipelined (no wait) | {pipelined['per_s']:.0f} | {pipelined['ms_per_message']:.1f}"
            f" | {', '.join(map(str, pipelined['inversions']))} |",
            f"| one in flight (next after the ack) | {serial['per_s']:.0f}"
            f" | {serial['ms_per_message']:.1f} | {', '.join(map(str, serial['inversions']))} |",
            "",
            f"Pipelining carries {pipelined['per_s'] / serial['per_s']:.2f}x the messages/s of"
            " one in flight here, and logs them out of order; one in flight never does. On this"
            " machine every invocation shares two cores with the emulator and moto, so"
            " concurrent invocations gain little; on AWS they run in parallel and pipelining is"
            " faster, while one in flight carries about 1000 / RTT(ms) messages/s per stream of"
            " a connection (a send's round trip: API Gateway -> Lambda -> the log's two writes"
            " -> fan-out -> ack, tens of ms). Other streams, and other connections, are not"
            " held back.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publisher_order")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--out", default=str(RESULTS_DIR / "publisher_order.md"))
    args = parser.parse_args(argv)
    print("per-publisher order (local gateway)")
    text = markdown(measure(args.n))
    print()
    print(text)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"written: {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
