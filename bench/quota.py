"""Concurrent fan-outs under a shared account quota (``python -m bench.quota``): issue #16.

Every ``@connections`` call counts against the account's request quota (10,000 rps, burst
5,000), shared by every fan-out running at once. Here, scaled down ten times so that two cores
are not the bottleneck: one ``@connections`` sink (``bench/sink.py``) behind the local
gateway's token bucket (``local_gateway/token_bucket.py``) at 1,000 rps, burst 500, and four sender
processes, each one Lambda container doing one fan-out of 2,000 recipients at the same moment
through the real ``Broadcaster`` -> ``ManagementApi`` -> async transport. Run twice: AIMD
pacing (``FANOUT_RATE_CONTROL=aimd``, ``FANOUT_MAX_RATE`` = the quota, also scaled) and
today's fixed concurrency (``off``: ``FANOUT_WORKERS=64`` posts in flight, paced by nothing).

The sink answers instead of real WebSockets: the quota, not the delivery, is what is measured
(``bench/fanout.py`` measures delivery to real clients). Writes ``bench/results/quota.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import DUMMY_CREDENTIALS, REGION, RESULTS_DIR, Child, command_loop, emit, load

MODES = ("aimd", "off")


@dataclass(frozen=True)
class QuotaPlan:
    senders: int = 4
    recipients: int = 2000
    account_rps: float = 1000.0
    account_burst: float = 500.0
    # FANOUT_MAX_RATE and FANOUT_INITIAL_RATE scaled down like the quota: 10,000 and 3,200
    # (64 FANOUT_WORKERS at ~20 ms a post) on AWS.
    initial_rate: float = 320.0


def run(plan: QuotaPlan, progress: Any = print) -> dict[str, Any]:
    """Both modes against one sink; a fresh bucket and fresh sender processes for each."""
    results: dict[str, Any] = {"plan": plan.__dict__, "load_before": load()}
    sink = Child(
        "bench.sink",
        ["--account-rps", str(plan.account_rps), "--account-burst", str(plan.account_burst)],
    )
    try:
        url = sink.recv(30)["url"]
        for mode in MODES:
            progress(f"  {mode}: {plan.senders} x {plan.recipients} recipients")
            sink.request(cmd="quota", rps=plan.account_rps, burst=plan.account_burst)
            results[mode] = _run_mode(plan, mode, url, sink)
    finally:
        sink.close()
    results["load_after"] = load()
    return results


def _run_mode(plan: QuotaPlan, mode: str, url: str, sink: Child) -> dict[str, Any]:
    env = {
        "FANOUT_RATE_CONTROL": mode,
        "FANOUT_MAX_RATE": str(plan.account_rps),
        "FANOUT_INITIAL_RATE": str(plan.initial_rate),
        "AWS_ACCESS_KEY_ID": DUMMY_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": DUMMY_CREDENTIALS["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": REGION,
    }
    senders = [Child("bench.quota", ["--sender", url], env=env) for _ in range(plan.senders)]
    try:
        for sender in senders:
            sender.recv(60)  # ready: imported, gateway built
        for sender in senders:  # all at once: one command each, answers read afterwards
            sender.send(cmd="fanout", recipients=plan.recipients)
        reports = [sender.recv(300) for sender in senders]
    finally:
        for sender in senders:
            sender.close()
    counts = sink.request(cmd="count")
    started = min(r["started"] for r in reports)
    finished = max(r["finished"] for r in reports)
    delivered = sum(r["delivered"] for r in reports)
    attempts = counts["posts"] + counts["throttled"]
    return {
        "seconds": finished - started,
        "delivered": delivered,
        "failed": sum(r["failed"] for r in reports),
        "recipients": sum(r["recipients"] for r in reports),
        "posts_per_s": delivered / (finished - started),
        "posts": attempts,
        "throttled": counts["throttled"],
        "throttled_share": counts["throttled"] / attempts if attempts else 0.0,
        "per_sender_posts_per_s": [
            r["delivered"] / (r["finished"] - r["started"]) for r in reports
        ],
        "final_rates": [r["rate"] for r in reports],
    }


def markdown(results: dict[str, Any]) -> str:
    plan = results["plan"]
    aimd, off = results["aimd"], results["off"]
    lines = [
        "## Concurrent broadcasts under the account quota",
        "",
        f"{plan['senders']} fan-outs at once, one per process, {plan['recipients']:,} recipients "
        f"each, against a shared quota of {plan['account_rps']:g} rps (burst "
        f"{plan['account_burst']:g}): AWS's 10,000/5,000 scaled down ten times. Load average "
        f"before/after: {results['load_before']} / {results['load_after']}.",
        "",
        "| | AIMD (`FANOUT_RATE_CONTROL=aimd`) | fixed concurrency (`off`) | target (AIMD) |",
        "|---|---|---|---|",
    ]

    def row(name: str, key: str, fmt: str, target: str) -> None:
        lines.append(f"| {name} | {aimd[key]:{fmt}} | {off[key]:{fmt}} | {target} |")

    row("aggregate delivered posts/s", "posts_per_s", ",.0f", f"≥ {0.9 * plan['account_rps']:,.0f}")
    row("fan-outs' wall time (s)", "seconds", ".1f", "")
    row("posts sent (attempts)", "posts", ",d", "")
    row("posts answered 429", "throttled", ",d", "")
    lines.append(
        f"| 429 share of all posts | {aimd['throttled_share']:.1%} | {off['throttled_share']:.1%} "
        "| ≤ 5% |"
    )
    row("recipients delivered", "delivered", ",d", f"{aimd['recipients']:,}")
    row("recipients failed", "failed", ",d", "0")
    share = ", ".join(f"{x:.0f}" for x in aimd["per_sender_posts_per_s"])
    fixed = ", ".join(f"{x:.0f}" for x in off["per_sender_posts_per_s"])
    lines.append(f"| per-fan-out posts/s | {share} | {fixed} | equal shares |")
    return "\n".join(lines) + "\n"


def _sender(url: str) -> None:
    """One container: the real settings, gateway and broadcaster; one fan-out on command."""
    import boto3

    from chalicelib.broadcaster import Broadcaster
    from chalicelib.config import Settings
    from chalicelib.management_api import ManagementApi
    from chalicelib.registry import Target

    settings = Settings.from_env({**os.environ, "CONNECTIONS_TABLE": "bench", "AUTH_MODE": "none"})
    gateway = ManagementApi(
        override=url,
        session=boto3.session.Session(region_name=REGION),
        max_pool_connections=settings.fanout_workers,
        max_attempts=settings.max_attempts,
        rate_control=settings.fanout_rate_control,
        initial_rate=settings.fanout_initial_rate,
        max_rate=settings.fanout_max_rate,
    )
    broadcaster = Broadcaster(gateway)
    payload = b'{"type":"message","text":"quota"}'
    emit({"ready": True})

    def handle(message: dict[str, Any]) -> dict[str, Any]:
        n = int(message["recipients"])
        targets = (Target(f"c{os.getpid()}-{i}", "u", None) for i in range(n))
        started = time.time()
        report = broadcaster.fan_out(targets, payload)
        finished = time.time()
        transport = gateway._async_transport()
        rate = transport.rate if transport is not None else None
        return {
            "started": started,
            "finished": finished,
            "recipients": report.recipients,
            "delivered": report.delivered,
            "failed": report.failed,
            "rate": rate.rate if rate is not None else None,
        }

    command_loop(handle)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quota")
    parser.add_argument("--sender", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--senders", type=int, default=QuotaPlan.senders)
    parser.add_argument("--recipients", type=int, default=QuotaPlan.recipients)
    parser.add_argument("--account-rps", type=float, default=QuotaPlan.account_rps)
    parser.add_argument("--account-burst", type=float, default=QuotaPlan.account_burst)
    parser.add_argument("--out", default=str(RESULTS_DIR / "quota.md"))
    args = parser.parse_args(argv)
    if args.sender:
        _sender(args.sender)
        return 0
    plan = QuotaPlan(args.senders, args.recipients, args.account_rps, args.account_burst)
    print("concurrent fan-outs under a shared quota (sink + sender processes)")
    text = markdown(run(plan))
    print()
    print(text)
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
