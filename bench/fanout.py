"""Fan-out: N real WebSocket clients on the local gateway, one broadcast, until all have it.

Four processes on 127.0.0.1, as on AWS where these are separate machines: DynamoDB (moto),
the local gateway (WebSocket API + ``@connections``; it runs the app's real ``$connect``
handler, so the registry is filled by the app), the N clients, and this driver, which runs
the variants of ``bench.variants`` one after another against the same clients.

Delivery time = (the last client's arrival time) - (the driver's time just before it starts
the broadcast), both on CLOCK_MONOTONIC. It includes the registry read. Posts per second =
N / delivery time. Repetitions are interleaved (every variant once, then again), and the
median is reported.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Child, load, median
from bench.variants import RawPoster, SeedLoop, SwitchboardPush

VARIANTS = ("seed", "switchboard", "switchboard-boto3", "limit")


@dataclass
class FanoutPlan:
    sizes: list[int]
    latencies_ms: list[float] = field(default_factory=lambda: [0.0, 20.0])
    reps: int = 3
    variants: tuple[str, ...] = VARIANTS
    # The seed posts one at a time: its runs are skipped when estimated longer than this,
    # and repeated only when shorter than ``seed_repeat_s``.
    seed_budget_s: float = 60.0
    seed_repeat_s: float = 5.0
    workers: int = 64
    connect_timeout_s: float = 180.0


class Stack:
    """DynamoDB, gateway and clients processes; closed in reverse order."""

    def __init__(self, log_dir: Path, parallel_handshakes: int = 64) -> None:
        log_dir.mkdir(parents=True, exist_ok=True)
        self.children: list[Child] = []
        self.dynamodb = self._start("bench.services", ["dynamodb"], log_dir / "dynamodb.log")
        self.dynamodb_url = self.dynamodb.recv(60)["url"]
        self.gateway = self._start(
            "bench.services", ["gateway", "--dynamodb", self.dynamodb_url], log_dir / "gateway.log"
        )
        self.info = self.gateway.recv(90)
        self.clients = self._start(
            "bench.clients",
            [self.info["websocket"], "--parallel", str(parallel_handshakes)],
            log_dir / "clients.log",
        )
        self.clients.recv(60)

    def _start(self, module: str, args: list[str], log_path: Path) -> Child:
        child = Child(module, args, log_path=log_path)
        self.children.append(child)
        return child

    def grow(self, total: int, timeout: float) -> dict[str, Any]:
        answer = self.clients.request(wait=timeout + 60, cmd="grow", total=total, timeout=timeout)
        ids = self.gateway.request(cmd="ids")["ids"]
        answer["gateway_open"] = len(ids)
        answer["ids"] = ids
        return answer

    def close(self) -> None:
        # Clients first (abort: no close handshakes), then the gateway, then DynamoDB.
        for child in reversed(self.children):
            child.close(timeout=20)


def _record(
    variant: str,
    n: int,
    latency: float,
    rep: int,
    started: float,
    run: dict[str, Any],
    got: dict[str, Any],
) -> dict[str, Any]:
    complete = bool(got.get("complete"))
    delivery = (got["last"] - started) if complete else None
    return {
        "variant": variant,
        "n": n,
        "latency_ms": latency,
        "rep": rep,
        "delivery_s": delivery,
        "first_s": (got["first"] - started) if got.get("count") else None,
        "received": got.get("count", 0),
        "complete": complete,
        "posts_per_s": (n / delivery) if delivery else None,
        **run,
    }


def run(plan: FanoutPlan, log_dir: Path, progress: Any = print) -> dict[str, Any]:
    stack = Stack(log_dir)
    saved_endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
    os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = stack.dynamodb_url
    info = stack.info
    runners: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    connects: list[dict[str, Any]] = []
    registry_reads: list[dict[str, Any]] = []
    number = 0
    seed_post_s = 0.002  # per post at 0 ms, refined by the first seed run
    try:
        if "seed" in plan.variants:
            runners["seed"] = SeedLoop(info["table"], stack.dynamodb_url, info["management"])
        for transport, name in (("async", "switchboard"), ("boto3", "switchboard-boto3")):
            if name in plan.variants:
                runners[name] = SwitchboardPush(
                    info["table"], info["management"], transport, workers=plan.workers
                )
        if "limit" in plan.variants:
            runners["limit"] = RawPoster(info["management"], concurrency=plan.workers)
        warmed = False
        for n in plan.sizes:
            grown = stack.grow(n, plan.connect_timeout_s)
            ids = grown.pop("ids")
            connects.append({"n": n, **grown})
            progress(f"  {n} clients open ({grown['seconds']:.1f}s to connect the new ones)")
            if grown["open"] < n or len(ids) < n:
                progress(f"  only {grown['open']} clients could connect; stopping at this size")
                break
            if "limit" in runners:
                runners["limit"].set_ids(ids)
            for latency in plan.latencies_ms:
                stack.gateway.request(cmd="faults", latency_ms=latency)
                if not warmed:  # keep-alive connections, clients and caches of every variant
                    for runner in runners.values():
                        number += 1
                        stack.clients.request(cmd="expect", round=number, count=n, timeout=60)
                        runner.run(number)
                        stack.clients.recv(90)
                    warmed = True
                if "switchboard" in runners:
                    reads = [runners["switchboard"].read_registry() for _ in range(3)]
                    registry_reads.append(
                        {
                            "n": n,
                            "latency_ms": latency,
                            "targets": reads[0][0],
                            "read_s": median(r[1] for r in reads),
                            **reads[0][2],
                        }
                    )
                for rep in range(plan.reps):
                    for name, runner in runners.items():
                        if name == "seed":
                            estimate = n * (seed_post_s + latency / 1000.0)
                            if estimate > plan.seed_budget_s:
                                if rep == 0:
                                    progress(
                                        f"  seed skipped at N={n}, {latency:g} ms "
                                        f"(estimated {estimate:.0f}s > {plan.seed_budget_s:.0f}s)"
                                    )
                                    rows.append(
                                        {
                                            "variant": name,
                                            "n": n,
                                            "latency_ms": latency,
                                            "rep": 0,
                                            "skipped": True,
                                            "estimate_s": estimate,
                                        }
                                    )
                                continue
                            if rep > 0 and estimate > plan.seed_repeat_s:
                                continue
                        number += 1
                        expected = _expected_seconds(name, n, latency, seed_post_s)
                        timeout = 30.0 + 3 * expected
                        stack.clients.request(cmd="expect", round=number, count=n, timeout=timeout)
                        started = time.monotonic()
                        result = runner.run(number)
                        result["returned_s"] = time.monotonic() - started
                        got = stack.clients.recv(timeout + 30)
                        row = _record(name, n, latency, rep, started, result, got)
                        rows.append(row)
                        if name == "seed" and latency == 0 and row["delivery_s"]:
                            seed_post_s = max(seed_post_s, row["delivery_s"] / n) * 1.1
                        progress(
                            f"  N={n:>5} {latency:>3g} ms {name:<18} "
                            + (
                                f"{row['delivery_s'] * 1000:9.1f} ms  "
                                f"{row['posts_per_s']:8.0f} posts/s"
                                if row["delivery_s"]
                                else f"INCOMPLETE {row['received']}/{n}"
                            )
                        )
        stats = stack.gateway.request(cmd="stats")["stats"]
    finally:
        for runner in runners.values():
            if hasattr(runner, "close"):
                runner.close()
        stack.close()
        if saved_endpoint is None:
            os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB", None)
        else:
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = saved_endpoint
    return {
        "plan": asdict(plan),
        "rows": rows,
        "connects": connects,
        "registry_reads": registry_reads,
        "gateway_stats": stats,
        "load_after": load(),
    }


def _expected_seconds(name: str, n: int, latency_ms: float, seed_post_s: float) -> float:
    if name == "seed":
        return n * (seed_post_s + latency_ms / 1000.0)
    return n * (0.002 + latency_ms / 1000.0 / 16)


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per (N, latency): the median delivery time of each variant and the ratios."""
    table: dict[tuple[int, float], dict[str, Any]] = {}
    for row in result["rows"]:
        key = (row["n"], row["latency_ms"])
        entry = table.setdefault(key, {"n": row["n"], "latency_ms": row["latency_ms"]})
        if row.get("skipped"):
            entry.setdefault(row["variant"], {"skipped": True, "estimate_s": row["estimate_s"]})
            continue
        entry.setdefault(row["variant"], {"runs": []})["runs"].append(row)
    lines = []
    for key in sorted(table):
        entry = table[key]
        line: dict[str, Any] = {"n": entry["n"], "latency_ms": entry["latency_ms"]}
        for name in VARIANTS:
            data = entry.get(name)
            if data is None:
                continue
            if data.get("skipped"):
                line[name] = {"skipped": True, "estimate_s": round(data["estimate_s"], 1)}
                continue
            runs = data["runs"]
            done = [r["delivery_s"] for r in runs if r["delivery_s"]]
            line[name] = {
                "delivery_s": median(done) if done else None,
                "runs": len(runs),
                "incomplete": sum(1 for r in runs if not r["complete"]),
                "posts_per_s": (entry["n"] / median(done)) if done else None,
                "failed": sum(r.get("failed", 0) for r in runs),
            }
            if name == "seed":
                line[name]["read_s"] = median(r["read_s"] for r in runs)
        for read in result.get("registry_reads", []):
            if (read["n"], read["latency_ms"]) == key and "switchboard" in line:
                line["switchboard"]["read_s"] = read["read_s"]
        # The registry read as the run saw it: time to the first arrival, less the limit's
        # (which reads nothing, so its first arrival is one post's latency).
        limit_first = median(
            r["first_s"] for r in entry.get("limit", {}).get("runs", []) if r.get("first_s")
        )
        for name in ("seed", "switchboard", "switchboard-boto3"):
            runs = entry.get(name, {}).get("runs")
            if runs and name in line and limit_first == limit_first:  # not NaN
                firsts = [r["first_s"] for r in runs if r.get("first_s") is not None]
                if firsts:
                    line[name]["read_in_run_s"] = max(0.0, median(firsts) - limit_first)
        sb = line.get("switchboard", {}).get("delivery_s")
        seed = line.get("seed", {}).get("delivery_s")
        limit = line.get("limit", {}).get("delivery_s")
        boto = line.get("switchboard-boto3", {}).get("delivery_s")
        if sb and seed:
            line["speedup_vs_seed"] = seed / sb
        if sb and limit:
            line["fraction_of_limit"] = limit / sb
        if sb and boto:
            line["async_vs_boto3"] = boto / sb
        lines.append(line)
    return lines
