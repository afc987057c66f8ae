"""Where a fan-out's time goes: cProfile of the broadcaster at 1,000 recipients, 0 ms latency.

The broadcaster posts from the transport's event-loop thread while the calling thread waits,
so both threads get a profiler (cProfile only sees the thread that enabled it), and their
statistics are merged. The recipients are a ``bench.sink`` process (no WebSockets: what is
measured is the broadcaster's own CPU). ``before`` is the transport as it was before the
benchmark's changes (``BEFORE_REF``, loaded from git), ``after`` the current one.
"""

from __future__ import annotations

import concurrent.futures
import cProfile
import io
import pstats
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bench.common import DUMMY_CREDENTIALS, PROJECT_DIR, REGION, Child, median
from bench.transport_cpu import load_module

BEFORE_REF = "dcf070a7^"  # the commit before "transport: sign inside the connection slot..."

CATEGORIES = (
    (
        "signing (SigV4)",
        (
            "botocore/auth.py",
            ":headers",  # PostSigner.headers
            "_sign",
            "hmac.py",
            "_hashlib",
            "hexdigest",
            "normalize_url_path",
            "strftime",
            "datetime",
            "awsrequest.py",
            "urllib/parse.py",
            "botocore/utils.py",
            "email/",
        ),
    ),
    (
        "socket I/O (send/recv syscalls)",
        ("'send' of '_socket", "'recv' of '_socket", "select.epoll", "selectors.py"),
    ),
    ("asyncio machinery", ("asyncio/", "_contextvars", "_asyncio")),
    (
        "transport (HTTP framing, retries)",
        ("chalicelib/transport.py", "transport_before.py", "botocore/retries"),
    ),
    (
        "broadcaster + gateway",
        ("chalicelib/broadcaster.py", "chalicelib/management_api.py", "chalicelib/registry.py"),
    ),
    ("thread hand-off", ("threading.py", "concurrent/futures", "'acquire' of '_thread")),
)


def _category(filename: str, function: str) -> str:
    key = f"{filename}:{function}"
    for name, needles in CATEGORIES:
        if any(needle in key for needle in needles):
            return name
    return "other"


def _load_before() -> Any:
    module = load_module(BEFORE_REF, "transport_before")
    from chalicelib.transport import HttpResponse

    # Its answers must be the gateway's HttpResponse to be read as outcomes.
    module.HttpResponse = HttpResponse  # type: ignore[attr-defined]
    cls = module.AsyncConnectionsTransport
    if not hasattr(cls, "submit_many"):
        # The gateway now starts batches without waiting (submit_many); the old transport only
        # had the blocking post_many, which is what it did then: run it and hand back the result.
        def submit_many(self: Any, items: Any, data: bytes) -> Any:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()
            future.set_result(self.post_many(items, data))
            return future

        cls.submit_many = submit_many
    return cls


@contextmanager
def _transport_class(cls: Any) -> Iterator[None]:
    # management_api imports the transport class from here when it first posts.
    import chalicelib.transport as gateway_module

    original = gateway_module.AsyncConnectionsTransport
    gateway_module.AsyncConnectionsTransport = cls
    try:
        yield
    finally:
        gateway_module.AsyncConnectionsTransport = original


def _run(url: str, recipients: int, rounds: int, transport: str) -> dict[str, Any]:
    import boto3

    from chalicelib import protocol
    from chalicelib.broadcaster import Broadcaster
    from chalicelib.management_api import ManagementApi
    from chalicelib.registry import Target

    session = boto3.session.Session(region_name=REGION, **DUMMY_CREDENTIALS)
    # Unpaced: this measures the transport's CPU per post, not the quota's share.
    gateway = ManagementApi(override=url, session=session, transport=transport, rate_control="off")
    broadcaster = Broadcaster(gateway)
    payload = protocol.encode(protocol.message_frame("bench", protocol.Scope.ALL, "profile"))
    targets = [Target(f"P{i:09d}AAA=", f"u_{i}", None) for i in range(recipients)]
    warm = broadcaster.fan_out(targets, payload)  # warm: connections, loop, caches
    if warm.delivered != recipients:  # a broken variant must not pass for a fast one
        raise RuntimeError(
            f"{transport} delivered {warm.delivered} of {recipients}: {warm.outcomes}"
        )
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        broadcaster.fan_out(targets, payload)
        times.append(time.perf_counter() - started)
    main_profile = cProfile.Profile()
    loop_profile = cProfile.Profile()
    loop = getattr(getattr(gateway, "_transport", None), "_loop", None)
    if loop is not None:
        ready = threading.Event()
        loop.call_soon_threadsafe(lambda: (loop_profile.enable(), ready.set()))
        ready.wait(5)
    main_profile.enable()
    broadcaster.fan_out(targets, payload)
    main_profile.disable()
    if loop is not None:
        done = threading.Event()
        loop.call_soon_threadsafe(lambda: (loop_profile.disable(), done.set()))
        done.wait(5)
        gateway._transport.close()  # type: ignore[attr-defined]
    stats = pstats.Stats(main_profile, stream=io.StringIO())
    if loop is not None:
        stats.add(loop_profile)
    return {"seconds": median(times), "stats": stats}


def _summarize(stats: pstats.Stats, top: int = 12) -> dict[str, Any]:
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = 0.0
    by_category: dict[str, float] = {}
    rows = []
    for (filename, line, function), (_cc, calls, tottime, cumtime, _callers) in raw.items():
        total += tottime
        category = _category(filename, function)
        by_category[category] = by_category.get(category, 0.0) + tottime
        short = filename.split("site-packages/")[-1].split("lib/python3.11/")[-1]
        short = short.split(str(PROJECT_DIR) + "/")[-1]
        rows.append(
            {
                "function": f"{short}:{line}({function})",
                "calls": calls,
                "tottime_ms": round(tottime * 1000, 2),
                "cumtime_ms": round(cumtime * 1000, 2),
            }
        )
    rows.sort(key=lambda row: -row["tottime_ms"])
    # Waiting (the main thread blocked on the loop's result) is not CPU: leave it out.
    waiting = by_category.pop("thread hand-off", 0.0)
    cpu = sum(by_category.values())
    return {
        "cpu_ms_profiled": round(cpu * 1000, 1),
        "waiting_ms": round(waiting * 1000, 1),
        "by_category": {
            name: {"ms": round(value * 1000, 1), "share": round(value / cpu, 3) if cpu else 0.0}
            for name, value in sorted(by_category.items(), key=lambda kv: -kv[1])
        },
        "top": [row for row in rows if "acquire" not in row["function"]][:top],
    }


def profile(recipients: int = 1000, rounds: int = 5, progress: Any = print) -> dict[str, Any]:
    out: dict[str, Any] = {"recipients": recipients, "latency_ms": 0, "before_ref": BEFORE_REF}
    with Child("bench.sink") as sink:
        url = sink.recv(30)["url"]
        try:
            before_cls = _load_before()
        except (subprocess.CalledProcessError, OSError, SyntaxError) as exc:
            before_cls = None
            out["before_error"] = str(exc)
        runs = [("after", None, "async")]
        if before_cls is not None:
            runs.insert(0, ("before", before_cls, "async"))
        runs.append(("boto3", None, "boto3"))
        for label, cls, transport in runs:
            if cls is not None:
                with _transport_class(cls):
                    result = _run(url, recipients, rounds, transport)
            else:
                result = _run(url, recipients, rounds, transport)
            out[label] = {
                "seconds": round(result["seconds"], 4),
                "posts_per_s": round(recipients / result["seconds"]),
                **_summarize(result["stats"]),
            }
            progress(
                f"  {label:<6} {recipients} posts in {result['seconds'] * 1000:.0f} ms "
                f"({recipients / result['seconds']:.0f} posts/s)"
            )
    return out
