"""One fan-out to N recipients in a fresh process; prints its memory as one JSON line.

    python -m bench.memory --url http://127.0.0.1:PORT/api --recipients 10000 [--mode rss]

``rss``: the process's peak resident set (``VmHWM``: unlike ``ru_maxrss``, not inherited from
the parent that forked it) after the imports and the setup, and after the fan-out; ``tracemalloc``: Python allocations' peak during the fan-out (slower, so a
separate run). Targets are generated lazily, as the registry yields them.
"""

from __future__ import annotations

import argparse
import json
import time
import tracemalloc
from collections.abc import Iterator

from bench.common import DUMMY_CREDENTIALS, REGION


def peak_rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--recipients", type=int, default=10000)
    parser.add_argument("--transport", default="async", choices=["async", "boto3"])
    parser.add_argument("--mode", default="rss", choices=["rss", "tracemalloc"])
    args = parser.parse_args()

    import boto3

    from chalicelib import protocol
    from chalicelib.broadcaster import Broadcaster
    from chalicelib.management_api import ManagementApi
    from chalicelib.registry import Target

    session = boto3.session.Session(region_name=REGION, **DUMMY_CREDENTIALS)
    gateway = ManagementApi(override=args.url, session=session, transport=args.transport)
    broadcaster = Broadcaster(gateway)
    payload = protocol.encode(protocol.message_frame("bench", protocol.Scope.ALL, "memory " * 10))

    def targets() -> Iterator[Target]:
        for i in range(args.recipients):
            yield Target(f"M{i:09d}AAA=", f"u_{i}", None)

    # Warm up: imports, the event loop or the thread pool, keep-alive connections.
    broadcaster.fan_out(iter([Target("warmup", "u", None)]), payload)
    before_kib = peak_rss_kib()
    if args.mode == "tracemalloc":
        tracemalloc.start()
    started = time.perf_counter()
    report = broadcaster.fan_out(targets(), payload)
    seconds = time.perf_counter() - started
    out: dict[str, object] = {"delivered": report.delivered, "failed": report.failed}
    if args.mode == "tracemalloc":
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["tracemalloc_peak_mib"] = round(peak / 2**20, 2)
    else:
        after_kib = peak_rss_kib()
        out.update(
            {
                "rss_before_mib": round(before_kib / 1024, 1),
                "rss_peak_mib": round(after_kib / 1024, 1),
                "rss_growth_mib": round((after_kib - before_kib) / 1024, 1),
                "seconds": round(seconds, 3),
                "posts_per_s": round(args.recipients / seconds),
            }
        )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
