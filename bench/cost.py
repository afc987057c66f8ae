"""A price per million messages, all in, from measured counts: switchboard beside the seed design,
AWS's sample chat app and AppSync Events, at list prices (us-east-1).

``python -m bench.cost [--calls bench/results/calls.json] [--out bench/results/cost.md]``

What is measured and what is modelled:

- **measured here** (``bench/calls.py``, the app's handlers on moto, ``AUTH_MODE=jwt`` as
  deployed): DynamoDB calls, read/write request units from item sizes, the sequential chain
  of calls, the app's CPU time and its log bytes per action (a 1:1 send, a ``sendRoom``, a
  ping); the fan-out's CPU per recipient comes from ``bench/results/quick.json``'s profile (a
  cProfile run, an upper bound) and the seed's delivery time from ``bench/results/full.json``;
- **modelled**: Lambda's billed duration = the app's CPU time stretched by the CPU share of
  the memory size (one vCPU at 1,769 MB, proportionally less below: "Lambda allocates CPU
  power in proportion to the amount of memory configured",
  https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html) + each sequential
  DynamoDB call at ``DDB_MS`` + each sequential ``@connections`` round at ``POST_MS``; arm64 is
  assumed to run this pure-Python code at the same speed as x86_64 (only the price differs);
- **workload assumptions** (``WORKLOADS``): how often a connected client sends, how many
  recipients a message has, a keepalive ping every 5 minutes per connection (API Gateway closes
  a connection idle for 10 minutes).

Every price carries the page it is listed on and the date it was read; where the page in the
search store renders its rates as placeholders, the figure's other source is named.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR

READ_ON = "2026-12-06"


@dataclass(frozen=True)
class Price:
    usd: float
    unit: str
    page: str
    note: str = ""


# List prices, us-east-1, first tier (read on READ_ON).
PRICES: dict[str, Price] = {
    "ws_message": Price(
        1.00 / 1e6,
        "WebSocket message (sent or received; metered in 32 KB increments), first 1 billion",
        "https://aws.amazon.com/api-gateway/pricing/",
        "the page (in the store) renders its rate table as placeholders; $1.00/million and the "
        "32 KB increment are its WebSocket example and FAQ text (also quoted on re:Post, "
        "repost.aws QU7IqgooGeQmqudOsmzTw5YQ)",
    ),
    "ws_connection_minute": Price(
        0.25 / 1e6,
        "WebSocket connection minute",
        "https://aws.amazon.com/api-gateway/pricing/",
        "$0.25 per million connection minutes, as quoted from the page on re:Post "
        "(repost.aws QU7IqgooGeQmqudOsmzTw5YQ)",
    ),
    "lambda_request": Price(
        0.20 / 1e6,
        "Lambda request",
        "https://aws.amazon.com/lambda/pricing/",
        "the page's rate table is not in the store's copy; $0.20/million from its mirrors "
        "(cloudchipr.com/blog/aws-lambda-pricing, us-east-1)",
    ),
    "lambda_gbs_x86_64": Price(
        0.0000166667,
        "Lambda GB-second, x86_64, first 6 billion GB-s/month",
        "https://aws.amazon.com/lambda/pricing/",
        "as above (cloudchipr.com/blog/aws-lambda-pricing)",
    ),
    "lambda_gbs_arm64": Price(
        0.0000133334,
        "Lambda GB-second, arm64, first 7.5 billion GB-s/month",
        "https://aws.amazon.com/lambda/pricing/",
        "as above (cloudchipr.com/blog/aws-lambda-pricing)",
    ),
    "ddb_wru": Price(
        0.625 / 1e6,
        "DynamoDB on-demand write request unit (1 KB; 2 per transactional KB)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        "the page's key terms are in the store, its rates not; $0.625/million after the "
        "November 2024 cut (airbyte.com/data-engineering-resources/dynamodb-pricing)",
    ),
    "ddb_rru": Price(
        0.125 / 1e6,
        "DynamoDB on-demand read request unit (4 KB strongly consistent, 2 x 4 KB eventually)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
        "as above",
    ),
    "sqs_request": Price(
        0.40 / 1e6,
        "SQS standard request (each 64 KB chunk of a payload is one request)",
        "https://aws.amazon.com/sqs/pricing/",
        "the page is not in the store; $0.40/million and the 64 KB rule from "
        "cloudburn.io/blog/amazon-sqs-pricing (March 2026, us-east-1)",
    ),
    "logs_gb": Price(
        0.50,
        "CloudWatch Logs ingestion, standard class, per GB",
        "https://aws.amazon.com/cloudwatch/pricing/",
        "the page is not in the store; $0.50/GB from c3x.dev/blog/cloudwatch-logs-cost-"
        "optimization (us-east-1, June 2026). EMF metrics are billed per metric per month "
        "(not per message): left out",
    ),
    "appsync_operation": Price(
        1.00 / 1e6,
        "AppSync Events API operation (a publish, and each message delivered to a subscriber)",
        "https://aws.amazon.com/appsync/pricing/",
        "the page is not in the store; '$1 per million Event API operations' is AWS's price "
        "list (huggingface.co/datasets/labofsahil/aws-pricing-dataset, AWSAppSync.csv)",
    ),
    "appsync_connection_minute": Price(
        0.08 / 1e6,
        "AppSync Events connection minute",
        "https://aws.amazon.com/appsync/pricing/",
        "not found in the store: the figure issue #26 quotes from the page",
    ),
}

# A round trip to DynamoDB from Lambda in its region, and one @connections POST round (posts
# of one fan-out page go side by side). Assumptions, not measurements: DynamoDB advertises
# single-digit milliseconds; bench/fanout.py runs its @connections at 20 ms.
DDB_MS = 5.0
POST_MS = 15.0
# Lambda's own START/END/REPORT lines per invocation (about 350 bytes): an assumption.
PLATFORM_LOG_BYTES = 350
ONE_VCPU_MB = 1769  # https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html
KEEPALIVE_PER_MINUTE = 1 / 5  # a ping every 5 minutes per connection
DEADLINE_S = 25.0  # FANOUT_DEADLINE_SECONDS: past it, a fan-out continues on SQS
CONTINUATION_BATCH = 2000  # recipients per continuation job


@dataclass(frozen=True)
class Workload:
    """One message sent, ``recipients`` connections it reaches; each connected client sends
    ``sends_per_minute`` messages (so a message carries 1/that connection minutes of each
    connection that shares the load: ``connections_per_message``)."""

    name: str
    action: str  # the bench.calls action whose counts a send has
    recipients: int
    connection_minutes_per_message: float
    note: str


WORKLOADS = (
    Workload(
        "1:1 chat",
        "send",
        1,
        1.0,
        "each connected client sends one direct message a minute to one online recipient",
    ),
    Workload(
        "rooms of 20",
        "send_room",
        19,
        1.0,
        "rooms of 20 members; each member sends one message a minute, delivered to the 19 others",
    ),
    Workload(
        "broadcast to 10,000",
        "broadcast",
        10_000,
        10_000.0,
        "one admin broadcastAll a minute to 10,000 otherwise idle connections",
    ),
)


def cpu_scale(memory_mb: int) -> float:
    """How much longer CPU work takes at ``memory_mb`` than with a whole vCPU."""
    return max(1.0, ONE_VCPU_MB / memory_mb)


@dataclass
class Lines:
    """Dollars per million messages, by line."""

    items: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, usd_per_message: float) -> None:
        self.items[name] = self.items.get(name, 0.0) + usd_per_message * 1e6

    @property
    def total(self) -> float:
        return sum(self.items.values())


@dataclass(frozen=True)
class Action:
    """What one invocation costs, from bench.calls: units, sequential calls, CPU, log bytes."""

    rru: float
    wru: float
    sequential_calls: int
    cpu_ms: float
    log_bytes: int
    post_rounds: int = 2  # the delivery, then the reply


def _gbs(memory_mb: int, duration_ms: float) -> float:
    return memory_mb / 1024 * math.ceil(duration_ms) / 1000  # billed in 1 ms increments


def duration_ms(action: Action, memory_mb: int, fanout_cpu_ms: float = 0.0) -> float:
    cpu = (action.cpu_ms + fanout_cpu_ms) * cpu_scale(memory_mb)
    return cpu + action.sequential_calls * DDB_MS + action.post_rounds * POST_MS


def switchboard(
    workload: Workload,
    actions: Mapping[str, Action],
    memory_mb: int,
    arch: str,
    fanout_cpu_ms_per_recipient: float,
) -> Lines:
    lines = Lines()
    send = actions[workload.action]
    ping = actions["ping"]
    p = PRICES
    pings = workload.connection_minutes_per_message * KEEPALIVE_PER_MINUTE
    # API Gateway: the frame in, one post per recipient, the ack; each ping and its pong.
    lines.add("API Gateway messages", (2 + workload.recipients + 2 * pings) * p["ws_message"].usd)
    lines.add(
        "API Gateway connection minutes",
        workload.connection_minutes_per_message * p["ws_connection_minute"].usd,
    )
    fan_cpu = workload.recipients * fanout_cpu_ms_per_recipient
    send_ms = duration_ms(send, memory_mb, fan_cpu)
    continued = 0
    if send_ms / 1000 > DEADLINE_S:  # the rest goes on SQS in jobs of CONTINUATION_BATCH
        continued = math.ceil(workload.recipients * (1 - DEADLINE_S * 1000 / send_ms))
    jobs = math.ceil(continued / CONTINUATION_BATCH) if continued else 0
    invocations = 1 + pings + jobs
    lines.add("Lambda requests", invocations * p["lambda_request"].usd)
    gbs = _gbs(memory_mb, send_ms) + pings * _gbs(memory_mb, duration_ms(ping, memory_mb))
    lines.add(f"Lambda GB-s ({arch})", gbs * p[f"lambda_gbs_{arch}"].usd)
    lines.add(
        "DynamoDB",
        (send.wru + pings * ping.wru) * p["ddb_wru"].usd
        + (send.rru + pings * ping.rru) * p["ddb_rru"].usd,
    )
    # A job is sent, received and deleted: three requests (payloads well under 64 KB).
    lines.add("SQS", 3 * jobs * p["sqs_request"].usd)
    log_bytes = (send.log_bytes + PLATFORM_LOG_BYTES) + pings * (
        ping.log_bytes + PLATFORM_LOG_BYTES
    )
    lines.add("CloudWatch Logs", log_bytes / 1e9 * p["logs_gb"].usd)
    return lines


def seed(
    workload: Workload, table_items: int, item_bytes: int, seed_post_ms: float
) -> Lines | None:
    """The article's design: broadcastAll only (a Scan of the whole table, then one POST after
    another from a 128 MB Go function); no ack, no log, no limits; a ping is a $default
    invocation. It has no route for a direct message or a room."""
    if workload.action != "broadcast":
        return None
    p = PRICES
    lines = Lines()
    pings = workload.connection_minutes_per_message * KEEPALIVE_PER_MINUTE
    lines.add("API Gateway messages", (1 + workload.recipients + pings) * p["ws_message"].usd)
    lines.add(
        "API Gateway connection minutes",
        workload.connection_minutes_per_message * p["ws_connection_minute"].usd,
    )
    lines.add("Lambda requests", (1 + pings) * p["lambda_request"].usd)
    seconds = workload.recipients * seed_post_ms / 1000
    lines.add("Lambda GB-s (x86_64)", _gbs(128, seconds * 1000) * p["lambda_gbs_x86_64"].usd)
    scan_rru = math.ceil(table_items * item_bytes / 4096) * 0.5  # Scan reads every item
    lines.add("DynamoDB", scan_rru * p["ddb_rru"].usd)
    lines.add("CloudWatch Logs", (1 + pings) * PLATFORM_LOG_BYTES / 1e9 * p["logs_gb"].usd)
    return lines


def aws_sample(workload: Workload, item_bytes: int) -> Lines | None:
    """aws-samples/simple-websockets-chat-app: sendmessage Scans the whole table and posts to
    every connection side by side (Node.js, 128 MB); one room: every connection. It fits a
    room (the table = the room's 20 members) and a broadcast, not a direct message."""
    if workload.action == "send":
        return None
    p = PRICES
    lines = Lines()
    members = workload.recipients + 1
    pings = workload.connection_minutes_per_message * KEEPALIVE_PER_MINUTE
    lines.add("API Gateway messages", (1 + members + pings) * p["ws_message"].usd)
    lines.add(
        "API Gateway connection minutes",
        workload.connection_minutes_per_message * p["ws_connection_minute"].usd,
    )
    lines.add("Lambda requests", (1 + pings) * p["lambda_request"].usd)
    # Posts side by side (Promise.all), bounded by Node's sockets: one round per 50 posts.
    rounds = math.ceil(members / 50)
    lines.add(
        "Lambda GB-s (x86_64)",
        _gbs(128, DDB_MS + rounds * POST_MS) * p["lambda_gbs_x86_64"].usd,
    )
    lines.add("DynamoDB", math.ceil(members * item_bytes / 4096) * 0.5 * p["ddb_rru"].usd)
    lines.add("CloudWatch Logs", (1 + pings) * PLATFORM_LOG_BYTES / 1e9 * p["logs_gb"].usd)
    return lines


def appsync_events(workload: Workload) -> Lines:
    """AppSync Events: a publish and one operation per subscriber reached; connection minutes.
    Nothing is logged or kept (no history, no resume, no per-user limits)."""
    p = PRICES
    lines = Lines()
    lines.add("AppSync operations", (1 + workload.recipients) * p["appsync_operation"].usd)
    lines.add(
        "AppSync connection minutes",
        workload.connection_minutes_per_message * p["appsync_connection_minute"].usd,
    )
    return lines


# --- inputs ---------------------------------------------------------------------------------


def actions_from(results: Sequence[Mapping[str, Any]], mode: str = "jwt") -> dict[str, Action]:
    out: dict[str, Action] = {}
    for r in results:
        if r["mode"] != mode:
            continue
        out[r["action"]] = Action(
            rru=float(r["read_units"]),
            wru=float(r["write_units"]),
            sequential_calls=int(r["path_total"]),
            cpu_ms=float(r["cpu_ms"]),
            log_bytes=int(r["log_bytes"]),
            post_rounds=2 if r["action"] != "ping" else 1,
        )
    return out


def broadcast_action(send_room: Action, recipients: int, entry_bytes: int, shards: int) -> Action:
    """broadcastAll to ``recipients``: a sendRoom's writes and CPU, with the room's Query
    replaced by one Query per ALL shard over the GSI2 entries (about ``entry_bytes`` each)."""
    per_shard = math.ceil(recipients / shards)
    rru = shards * math.ceil(per_shard * entry_bytes / 4096) * 0.5
    return Action(
        rru=send_room.rru - 0.5 + rru,
        wru=send_room.wru,
        sequential_calls=send_room.sequential_calls,
        cpu_ms=send_room.cpu_ms,
        log_bytes=send_room.log_bytes,
        post_rounds=0,  # the fan-out's own time is its CPU (posts overlap it)
    )


def fanout_inputs(results_dir: Path) -> dict[str, Any]:
    quick = json.loads((results_dir / "quick.json").read_text(encoding="utf-8"))
    full = json.loads((results_dir / "full.json").read_text(encoding="utf-8"))
    profile = quick["profile"]
    per_recipient = profile["after"]["cpu_ms_profiled"] / profile["recipients"]
    seed_ms = None
    for row in full["fanout_summary"]:
        if row["latency_ms"] == 20.0 and "delivery_s" in (row.get("seed") or {}):
            seed_ms = row["seed"]["delivery_s"] * 1000 / row["n"]  # per recipient, sequential
    return {
        "fanout_cpu_ms_per_recipient": per_recipient,
        "profile_commit": quick.get("commit"),
        "seed_post_ms": seed_ms or 22.8,
        "seed_commit": full.get("commit"),
    }


# --- the tables -----------------------------------------------------------------------------


def connection_sizes(shards: int = 8) -> tuple[int, int]:
    """The bytes of a connection item as ``Registry.register`` writes it (with a deployed
    endpoint and a token expiry), and of its GSI2 entry (what a broadcast Query reads)."""
    from bench import ddb_units
    from chalicelib.registry import Registry
    from chalicelib.table import DynamoDB

    written: list[dict[str, Any]] = []

    class Capture:
        class exceptions:  # noqa: N801 - boto3's client.exceptions
            class ConditionalCheckFailedException(Exception):
                pass

        def put_item(self, **params: Any) -> dict[str, Any]:
            written.append(params["Item"])
            return {}

    registry = Registry(DynamoDB(Capture(), "t", clock=lambda: 1.8e9), all_shards=shards)
    registry.register(
        "R1kmxc2VNjMCFIA=",
        "u_8f3a2c91",
        1_800_000_000_000,
        endpoint="https://abc123def4.execute-api.us-east-1.amazonaws.com/api",
        token_expires_at=1_800_003_600,
    )
    item = written[0]  # already DynamoDB JSON (the table layer encoded it)
    entry = ddb_units.index_entry(
        item, ("GSI2PK", "GSI2SK"), ("PK", "SK"), ("connectionId", "userId", "ttl", "endpoint")
    )
    return ddb_units.item_size(item), ddb_units.item_size(entry)


def build(
    results: Sequence[Mapping[str, Any]],
    results_dir: Path = RESULTS_DIR,
    memory_mb: int = 1024,
    shards: int = 8,
    before: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    fan = fanout_inputs(results_dir)
    item_bytes, entry_bytes = connection_sizes(shards)
    fan["connection_item_bytes"], fan["gsi2_entry_bytes"] = item_bytes, entry_bytes
    actions = actions_from(results)
    actions["broadcast"] = broadcast_action(actions["send_room"], 10_000, entry_bytes, shards)
    earlier: dict[str, Action] | None = None
    if before is not None:
        earlier = actions_from(before["results"])
        earlier["broadcast"] = broadcast_action(earlier["send_room"], 10_000, entry_bytes, shards)
    rows = []
    for workload in WORKLOADS:
        x86 = switchboard(
            workload, actions, memory_mb, "x86_64", fan["fanout_cpu_ms_per_recipient"]
        )
        arm = switchboard(workload, actions, memory_mb, "arm64", fan["fanout_cpu_ms_per_recipient"])
        seed_lines = seed(workload, workload.recipients, item_bytes, fan["seed_post_ms"])
        sample = aws_sample(workload, item_bytes)
        rows.append(
            {
                "workload": workload.name,
                "note": workload.note,
                "x86_64": x86.items,
                "x86_64_total": x86.total,
                "arm64": arm.items,
                "arm64_total": arm.total,
                "api_gateway_floor": x86.items["API Gateway messages"]
                + x86.items["API Gateway connection minutes"],
                "seed_total": seed_lines.total if seed_lines else None,
                "aws_sample_total": sample.total if sample else None,
                "appsync_events_total": appsync_events(workload).total,
                # Before: that commit's counts, on x86_64 as its template deployed them.
                "before_total": switchboard(
                    workload, earlier, memory_mb, "x86_64", fan["fanout_cpu_ms_per_recipient"]
                ).total
                if earlier
                else None,
            }
        )
    return {
        "memory_mb": memory_mb,
        "inputs": fan,
        "rows": rows,
        "sizing": sizing(actions, fan),
        "before_commit": before.get("commit") if before else None,
    }


def sizing(actions: Mapping[str, Action], fan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The model behind the template's memory size: $ per million messages of each workload,
    and the broadcast's first-invocation time, per memory size and architecture."""
    out = []
    for memory in (128, 256, 512, 1024, 1769, 2048):
        row: dict[str, Any] = {"memory_mb": memory}
        for workload in WORKLOADS:
            for arch in ("x86_64", "arm64"):
                lines = switchboard(
                    workload, actions, memory, arch, fan["fanout_cpu_ms_per_recipient"]
                )
                row[f"{workload.name} {arch}"] = round(lines.total, 2)
        fan_ms = duration_ms(
            actions["broadcast"], memory, 10_000 * fan["fanout_cpu_ms_per_recipient"]
        )
        # What the memory size adds to a 1:1 message's latency (its CPU, stretched), and how
        # long a 10,000-recipient broadcast's first invocation runs (past DEADLINE_S: SQS).
        row["1:1 send CPU ms"] = round(actions["send"].cpu_ms * cpu_scale(memory), 1)
        row["broadcast_s"] = round(fan_ms / 1000, 1)
        out.append(row)
    return out


def _usd(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"${value:,.2f}"


def markdown(table: Mapping[str, Any]) -> str:
    before = table.get("before_commit")
    lines = [
        f"Price per million messages sent, all in (us-east-1 list prices read {READ_ON}; "
        f"message function {table['memory_mb']} MB; counts from `bench/calls.py`, "
        "AUTH_MODE=jwt):",
        "",
        "| workload | API Gateway (floor) | switchboard x86_64 | switchboard arm64 "
        + (f"| before (`{before}`, x86_64 as deployed) " if before else "")
        + "| seed design | AWS sample chat | AppSync Events |",
        "|---|---:|---:|---:|" + ("---:|" if before else "") + "---:|---:|---:|",
    ]
    for row in table["rows"]:
        lines.append(
            f"| {row['workload']} | {_usd(row['api_gateway_floor'])} | {_usd(row['x86_64_total'])} "
            f"| {_usd(row['arm64_total'])} "
            + (f"| {_usd(row['before_total'])} " if before else "")
            + f"| {_usd(row['seed_total'])} "
            f"| {_usd(row['aws_sample_total'])} | {_usd(row['appsync_events_total'])} |"
        )
    lines += ["", "Switchboard's lines (arm64), $ per million messages:", ""]
    names = list(table["rows"][0]["arm64"])
    lines.append("| workload | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for row in table["rows"]:
        lines.append(
            f"| {row['workload']} | " + " | ".join(_usd(row["arm64"][n]) for n in names) + " |"
        )
    lines += ["", "Workloads: " + "; ".join(f"**{w.name}**: {w.note}" for w in WORKLOADS) + "."]
    lines += [
        "",
        "Lambda sizing (the model, not a measurement): $ per million messages by memory size",
        "",
    ]
    sizing_rows = table["sizing"]
    keys = [k for k in sizing_rows[0] if k != "memory_mb"]
    lines.append("| memory | " + " | ".join(keys) + " |")
    lines.append("|---:|" + "---:|" * len(keys))
    for row in sizing_rows:
        cells = [
            f"{row[k]:.1f} s"
            if k == "broadcast_s"
            else f"{row[k]:.1f} ms"
            if k.endswith(" ms")
            else _usd(row[k])
            for k in keys
        ]
        lines.append(f"| {row['memory_mb']} MB | " + " | ".join(cells) + " |")
    lines += ["", "Prices:", "", "| item | price | page | note |", "|---|---:|---|---|"]
    for price in PRICES.values():
        amount = f"${price.usd * 1e6:g}/million" if price.usd < 0.001 else f"${price.usd:g}"
        if "GB-second" in price.unit:
            amount = f"${price.usd:.10f}"
        lines.append(f"| {price.unit} | {amount} | {price.page} (read {READ_ON}) | {price.note} |")
    inputs = table["inputs"]
    lines += [
        "",
        f"Model inputs: DynamoDB {DDB_MS:g} ms and an @connections round {POST_MS:g} ms per "
        f"sequential step; fan-out CPU {inputs['fanout_cpu_ms_per_recipient']:.3f} ms per "
        f"recipient (cProfile of commit {inputs['profile_commit']}, an upper bound); the "
        f"seed's sequential POST {inputs['seed_post_ms']:.1f} ms per recipient (bench full run, "
        f"commit {inputs['seed_commit']}); Lambda's own log lines {PLATFORM_LOG_BYTES} bytes per "
        f"invocation; a connection item {inputs['connection_item_bytes']} bytes, its GSI2 entry "
        f"{inputs['gsi2_entry_bytes']} bytes (as `Registry.register` writes them; the seed's "
        "and the sample's items are taken as the same size).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost")
    parser.add_argument("--calls", default=None, help="bench.calls JSON (default: measure now)")
    parser.add_argument("--memory", type=int, default=1024)
    parser.add_argument("--out", default=str(RESULTS_DIR / "cost"))
    args = parser.parse_args(argv)
    before = None
    if args.calls:
        data = json.loads(Path(args.calls).read_text(encoding="utf-8"))
        results, before = data["results"], data.get("before")
    else:
        from bench import calls

        measured = calls.measure(5.0, ("jwt",), ("send", "send_room", "ping"))
        results = [r.as_dict() for r in measured]
    table = build(results, memory_mb=args.memory, before=before)
    text = markdown(table)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(table, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
