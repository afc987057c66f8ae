"""CPU per post of the async transport against an older one, side by side in one run.

``python -m bench.transport_cpu [--ref 57257c9] [--posts 2000] [--rounds 7]``: both transports
post to one ``bench.sink`` process (0 ms, keep-alive), in alternating rounds, unpaced. What is
compared is the process CPU time per post (``time.process_time``; the sink is another
process and the calling thread only waits), which a loaded machine moves far less than wall
time. ``--ref`` is the transport before h11 framed the answers (the hand-written parser).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import DUMMY_CREDENTIALS, PROJECT_DIR, REGION, Child, load, median

REF = "57257c9"  # the last transport with the hand-written HTTP/1.1 response parser


def load_module(ref: str, name: str = "transport_ref") -> Any:
    """``chalicelib/transport.py`` as it was at ``ref``, loaded from git as module ``name``."""
    source = subprocess.run(
        ["git", "show", f"{ref}:chalicelib/transport.py"],
        cwd=str(PROJECT_DIR),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="switchboard-bench-")) / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _round(transport: Any, items: list[tuple[str, str]], data: bytes) -> tuple[float, float, float]:
    start, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    results = transport.post_many(items, data)
    end, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - wall
    user, system = end.ru_utime - start.ru_utime, end.ru_stime - start.ru_stime
    failed = [r for r in results if getattr(r, "status_code", None) != 200]
    if failed:  # a broken transport must not pass for a fast one
        raise RuntimeError(f"{len(failed)} of {len(items)} posts failed: {failed[:3]}")
    return user, system, wall


def compare(ref: str = REF, posts: int = 2000, rounds: int = 7) -> dict[str, Any]:
    import boto3

    from chalicelib.transport import AsyncConnectionsTransport

    credentials = boto3.session.Session(region_name=REGION, **DUMMY_CREDENTIALS).get_credentials()
    data = b'{"type":"message","text":"' + b"x" * 120 + b'"}'
    out: dict[str, Any] = {"ref": ref, "posts": posts, "rounds": rounds, "load_before": load()}
    with Child("bench.sink") as sink:
        url = sink.recv(30)["url"]
        items = [(url, f"P{i:09d}AAA=") for i in range(posts)]
        transports = {
            "before": load_module(ref).AsyncConnectionsTransport(credentials, REGION),
            "after": AsyncConnectionsTransport(credentials, REGION),
        }
        for transport in transports.values():
            _round(transport, items, data)  # warm: connections, loop, caches
        samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in transports}
        for i in range(rounds):
            # Alternate which goes first: a load spike then falls on both in turn.
            order = list(transports) if i % 2 == 0 else list(reversed(transports))
            for name in order:
                samples[name].append(_round(transports[name], items, data))
        for transport in transports.values():
            transport.close()
    for name, rows in samples.items():
        cpu_us = median(user + system for user, system, _ in rows) / posts * 1e6
        out[name] = {
            "cpu_us_per_post": round(cpu_us, 1),
            "user_us_per_post": round(median(user for user, _, _ in rows) / posts * 1e6, 1),
            "sys_us_per_post": round(median(system for _, system, _ in rows) / posts * 1e6, 1),
            "posts_per_cpu_s": round(1e6 / cpu_us),
            "posts_per_s_wall": round(posts / median(wall for _, _, wall in rows)),
        }
    # Per round: after's posts per CPU-second over before's (rounds ran side by side).
    out["ratio_per_round"] = [
        round((b[0] + b[1]) / (a[0] + a[1]), 3)
        for a, b in zip(samples["after"], samples["before"], strict=True)
    ]
    out["ratio"] = round(out["after"]["posts_per_cpu_s"] / out["before"]["posts_per_cpu_s"], 3)
    out["load_after"] = load()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.transport_cpu")
    parser.add_argument("--ref", default=REF)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps(compare(args.ref, args.posts, args.rounds), indent=2))


if __name__ == "__main__":
    main()
