"""1:1 delivery latency on the local stack, with and without AWS-like DynamoDB round trips.

``python -m bench.latency [--latencies 0,5] [--sends 200] [--before REF]``: a local gateway (in
this process, embedded DynamoDB held ``--dynamodb-latency-ms`` per call) and two WebSocket
clients; one sends ``sends`` direct messages to the other, one at a time (the next after the
previous one's delivery and ack), and the time from send to delivery is recorded: p50 and p99
per DynamoDB latency. The sender's rate limit is raised so that the bucket never refuses.

``--before REF`` measures another commit's app in the same run: a temporary git worktree of
REF with this tree's ``bench/`` and ``local_gateway/`` laid over it (the tools are the same,
the app is REF's), run as a child process. Both columns then come from one run on one machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import before
from bench.common import PROJECT_DIR, load

ENV = {
    "MESSAGE_RATE": "100000",
    "MESSAGE_BURST": "100000",
    "LOG_LEVEL": "WARNING",
    # make run wires a continuation queue; AUTH_MODE=none has no JWT secret to derive the
    # jobs' signing key from (not a secret: a local run's).
    "CONTINUATION_KEY": "bench-latency-local-continuation-key",
}


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[rank]


def _recv_until(ws: Any, kind: str, timeout: float = 30.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        frame: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if frame.get("type") == kind:
            return frame


def measure_one(project_dir: Path, latency_ms: float, sends: int) -> dict[str, Any]:
    """``sends`` sequential 1:1 messages through a local gateway over ``project_dir``."""
    from websockets.sync.client import connect

    from local_gateway import LocalGateway

    gateway = LocalGateway(
        str(project_dir),
        ws_port=0,
        rest_port=None,
        auth_mode="none",
        env=dict(ENV),
        dynamodb_latency_ms=latency_ms,
    )
    gateway.start()
    # The app prints its EMF metrics lines on stdout (for CloudWatch): not this report's.
    quiet = contextlib.redirect_stdout(io.StringIO())
    quiet.__enter__()
    try:
        assert gateway.urls is not None
        url = gateway.urls.websocket
        opts: dict[str, Any] = {"ping_interval": None, "proxy": None, "open_timeout": 10}
        with connect(f"{url}?userId=u_b", **opts) as rx, connect(f"{url}?userId=u_a", **opts) as tx:
            times: list[float] = []
            for n in range(sends + 5):  # the first five warm the stack up, uncounted
                frame = {"action": "sendMessage", "targetUserId": "u_b", "text": f"m{n}", "ref": n}
                started = time.perf_counter()
                tx.send(json.dumps(frame))
                _recv_until(rx, "message")
                delivered = time.perf_counter()
                _recv_until(tx, "ack")
                if n >= 5:
                    times.append((delivered - started) * 1000)
    finally:
        gateway.stop()
        quiet.__exit__(None, None, None)
    return {
        "dynamodb_latency_ms": latency_ms,
        "sends": sends,
        "p50_ms": round(percentile(times, 50), 2),
        "p99_ms": round(percentile(times, 99), 2),
        "mean_ms": round(sum(times) / len(times), 2),
    }


def measure_before(ref: str, latencies: list[float], sends: int) -> dict[str, Any]:
    """The same measurement of commit ``ref``'s app (``bench/before.py``)."""
    args = ["--latencies", ",".join(f"{x:g}" for x in latencies), "--sends", str(sends)]
    return before.at(ref, "bench.latency", [*args, "--json", "{json}"])


def run(latencies: list[float], sends: int) -> dict[str, Any]:
    rows = []
    for latency in latencies:
        row = measure_one(PROJECT_DIR, latency, sends)
        print(f"  {latency:g} ms per DynamoDB call: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms")
        rows.append(row)
    return {"commit": before.short_commit(), "rows": rows}


def markdown(after: dict[str, Any], before: dict[str, Any] | None) -> str:
    lines = [
        "| DynamoDB latency per call | "
        + (f"before ({before['commit']}) p50 / p99 | " if before else "")
        + f"after ({after['commit']}) p50 / p99 |"
        + (" after/before p50 |" if before else ""),
        "|---:|" + ("---:|" if before else "") + "---:|" + ("---:|" if before else ""),
    ]
    for i, row in enumerate(after["rows"]):
        cells = [f"{row['dynamodb_latency_ms']:g} ms"]
        if before:
            b = before["rows"][i]
            cells.append(f"{b['p50_ms']:.1f} / {b['p99_ms']:.1f} ms")
        cells.append(f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f} ms")
        if before:
            cells.append(f"{row['p50_ms'] / before['rows'][i]['p50_ms']:.2f}x")
        lines.append("| " + " | ".join(cells) + " |")
    sends = after["rows"][0]["sends"] if after["rows"] else 0
    lines += [
        "",
        f"1:1 delivery, {sends} sequential sends on the local stack (`python -m bench.latency`), "
        "send to delivery at the recipient's socket.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency")
    parser.add_argument(
        "--latencies", default="0,5", help="DynamoDB latencies (ms), comma-separated"
    )
    parser.add_argument("--sends", type=int, default=200)
    parser.add_argument("--before", default=None, help="also measure this commit's app (git ref)")
    parser.add_argument("--json", default=None, help="write this run's figures here (JSON)")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    args = parser.parse_args(argv)
    latencies = [float(x) for x in args.latencies.split(",") if x.strip()]
    print(f"1:1 delivery latency, load average {load()}")
    after = run(latencies, args.sends)
    if args.json:
        Path(args.json).write_text(json.dumps(after, indent=2) + "\n", encoding="utf-8")
    earlier = measure_before(args.before, latencies, args.sends) if args.before else None
    text = markdown(after, earlier)
    print(text)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        out.with_suffix(".json").write_text(
            json.dumps({"before": earlier, "after": after}, indent=2) + "\n", encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
