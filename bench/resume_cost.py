"""Resume cost: what replaying missed messages reads, and what logging each sent message adds.

``python -m bench.resume_cost`` (or ``python -m bench --only resume``), against moto DynamoDB
in this process:

- **replay**: a stream holds ``n`` messages (10, 100, 500) a client missed; one
  ``Replayer.resume`` replays them all through a ``post`` that counts posts and bytes. Time,
  DynamoDB requests, items read and the read capacity moto reports (``ReturnConsumedCapacity``,
  asked for by a ``StatsClient``-like wrapper that also counts the GetItem of the stream's
  head).
- **replay on the wire, before and after batching**, in the same run: *before* is what the
  previous resume posted, one ``message`` frame with ``"replayed": true`` per missed message
  (so ``n`` posts); *after* is the ``replay`` frames of up to 32 KB it posts now. Posts, bytes,
  and the messages API Gateway meters (each post counts per started 32 KB:
  https://aws.amazon.com/api-gateway/pricing/), for short messages and for 8 KB ones. Posts
  to one connection go one after another (``chalicelib/replay.py``), so at ~15 ms per post on
  AWS the post count is the resume's duration.
- **ephemeral send**: the DynamoDB calls of one ``sendRoom`` to a room of ``recipients``
  members, logged and ephemeral, through the real handler (``Switchboard.on_message``) on
  moto with the fan-out on ``bench.sink``: every call counted by operation (botocore's
  ``before-call`` event), and the writes that touch a stream's partition (the log's) apart.
- **log write**: the extra cost per sent message of the log, in one run: ``MessageLog.append``
  (one UpdateItem + one PutItem) next to the fan-out of the same message to ``recipients``
  connections on ``bench.sink`` (a gateway-free ``@connections`` answering 200 at once), so a
  send costs ``append + fan-out`` with the log and ``fan-out`` without it.

moto answers in well under a millisecond, DynamoDB in a few: the write ratio here is a lower
bound of the log's share; the items and capacity units are the part that carries over.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import DUMMY_CREDENTIALS, REGION, RESULTS_DIR, Child, median
from bench.readstats import StatsClient
from bench.registry_cost import item_size, modelled_rcu
from local_gateway import moto_speedups

TABLE = "bench-resume"
SIZES = (10, 100, 500)
# The text of each missed message: short chat lines, and messages of 8 KB (MAX_TEXT_CHARS).
TEXTS = {"short": "missed {i}", "8 KB": "x" * 8000 + " {i}"}
METERED_BYTES = 32 * 1024  # API Gateway meters WebSocket messages in 32 KB increments
EVENTS_DIR = Path(__file__).resolve().parents[1] / "tests" / "events"


class _ReadsClient(StatsClient):
    """A ``StatsClient`` whose GetItems (the stream head a read starts with) count too, and
    that also models what DynamoDB would charge (``registry_cost.modelled_rcu``: 0.5 RCU
    per started 4 KB, eventually consistent; moto reports a flat figure per request)."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.modelled_rcu = 0.0

    def query(self, **params: Any) -> Any:
        response = super().query(**params)
        self.modelled_rcu += modelled_rcu([item_size(i) for i in response.get("Items", [])])
        return response

    def get_item(self, **params: Any) -> Any:
        response = self._client.get_item(ReturnConsumedCapacity="TOTAL", **params)
        consumed = response.get("ConsumedCapacity", {})
        self.stats.add({"Count": int("Item" in response), "ConsumedCapacity": consumed})
        self.modelled_rcu += modelled_rcu([item_size(response.get("Item", {}))])
        return response


def _metered(sizes: list[int]) -> int:
    return sum(-(-size // METERED_BYTES) for size in sizes)


def _replay(log: Any, reads: _ReadsClient, n: int, reps: int) -> dict[str, Any]:
    from chalicelib.management_api import Outcome
    from chalicelib.protocol import Cursor, Resume
    from chalicelib.replay import Replayer

    room = f"r{n}"
    stream = f"room:{room}"
    for i in range(n):
        log.append(stream, {"type": "message", "from": "u_bench", "text": f"missed {i}"})
    replayer = Replayer(log, max_replay=max(SIZES + (n,)))
    posted: list[bytes] = []

    def post(data: bytes) -> Outcome:
        posted.append(data)
        return Outcome.DELIVERED

    times = []
    for _ in range(reps):
        posted.clear()
        stats = reads.stats
        before = (stats.queries, stats.items_returned, stats.capacity_units, reads.modelled_rcu)
        started = time.perf_counter()
        frame = replayer.resume(Resume((Cursor(stream, 0),)), "u_bench", frozenset({room}), post)
        times.append(time.perf_counter() - started)
        assert frame is not None and frame["streams"][stream]["replayed"] == n
    requests = reads.stats.queries - before[0]
    return {
        "missed": n,
        "ms": median(times) * 1000,
        "requests": requests,
        "items": reads.stats.items_returned - before[1],
        "rcu": reads.stats.capacity_units - before[2],
        "modelled_rcu": reads.modelled_rcu - before[3],
        "posts": len(posted),
    }


def wire(n: int, text: str, epoch: str = "Qm9vdHN0cmFw") -> dict[str, Any]:
    """Posts, bytes and metered messages of replaying ``n`` missed messages with ``text``,
    one post per message (before) and in ``replay`` frames (after)."""
    from chalicelib import protocol
    from chalicelib.replay_frames import replay_frames

    messages = []
    for i in range(1, n + 1):
        frame = protocol.message_frame("u_bench", protocol.Scope.ROOM, text.format(i=i), "lobby")
        messages.append({**frame, "stream": "room:lobby", "seq": i, "epoch": epoch})
    one_by_one = [len(protocol.encode({**m, "replayed": True})) for m in messages]
    batched = [len(f) for f in replay_frames("room:lobby", epoch, messages)]
    return {
        "missed": n,
        "posts_before": len(one_by_one),
        "bytes_before": sum(one_by_one),
        "metered_before": _metered(one_by_one),
        "posts_after": len(batched),
        "bytes_after": sum(batched),
        "metered_after": _metered(batched),
    }


def _event(kind: str, connection_id: str, **fields: Any) -> dict[str, Any]:
    """A captured API Gateway event (tests/events/) for ``connection_id``."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{kind}.json").read_text("utf-8"))
    event["requestContext"]["connectionId"] = connection_id
    event["requestContext"]["connectedAt"] = int(time.time() * 1000)
    event.update(fields)
    return event


class _DynamoCalls:
    """Every DynamoDB call of a boto3 session's clients, by operation, and the writes that
    name a stream's partition (``STREAM#``: the message log's head and message items)."""

    WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")

    def __init__(self, session: Any) -> None:
        self.by_operation: dict[str, int] = {}
        self.log_writes = 0
        session.events.register("before-call.dynamodb", self._count)

    def _count(self, model: Any, params: Any, **_: Any) -> None:
        self.by_operation[model.name] = self.by_operation.get(model.name, 0) + 1
        if model.name in self.WRITES and b"STREAM#" in (params.get("body") or b""):
            self.log_writes += 1

    def take(self) -> dict[str, Any]:
        out = {"calls": dict(sorted(self.by_operation.items())), "log_writes": self.log_writes}
        self.by_operation, self.log_writes = {}, 0
        return out


def ephemeral_cost(url: str, recipients: int) -> dict[str, Any]:
    """DynamoDB calls of one logged and one ephemeral ``sendRoom`` (see the module doc)."""
    import boto3
    from moto import mock_aws

    from chalicelib.config import Settings
    from chalicelib.wiring import build_switchboard
    from deploy.create_table import create_table

    env = {
        "CONNECTIONS_TABLE": TABLE,
        "AUTH_MODE": "none",
        "APIGW_MANAGEMENT_ENDPOINT": url,
        "LOG_LEVEL": "WARNING",
        "MESSAGE_BURST": "1000",
    }
    out: dict[str, Any] = {"recipients": recipients + 1}  # the members besides a sender
    with mock_aws():
        session = boto3.session.Session(region_name=REGION, **DUMMY_CREDENTIALS)
        create_table(session.client("dynamodb"), TABLE)
        calls = _DynamoCalls(session)
        switchboard = build_switchboard(Settings.from_env(env), session)
        members = [f"C{i:011d}AAA=" for i in range(recipients + 2)]
        for i, cid in enumerate(members):
            query = {"userId": f"u_{i}"}
            switchboard.on_connect(
                _event(
                    "connect",
                    cid,
                    queryStringParameters=query,
                    multiValueQueryStringParameters=None,
                )
            )
            switchboard.on_message(
                _event("message", cid, body=json.dumps({"action": "join", "room": "bench"}))
            )
        # Each from its own sender, so the per-frame rate limit costs both the same.
        sends = (("logged", {}, members[0]), ("ephemeral", {"ephemeral": True}, members[1]))
        for kind, extra, sender in sends:
            calls.take()
            body = {"action": "sendRoom", "room": "bench", "event": "typing", "data": True, **extra}
            switchboard.on_message(_event("message", sender, body=json.dumps(body)))
            out[kind] = calls.take()
    return out


def _fanout_ms(url: str, recipients: int, rounds: int) -> float:
    import boto3

    from chalicelib import protocol
    from chalicelib.broadcaster import Broadcaster
    from chalicelib.management_api import ManagementApi
    from chalicelib.registry import Target

    session = boto3.session.Session(region_name=REGION, **DUMMY_CREDENTIALS)
    gateway = ManagementApi(override=url, session=session)
    broadcaster = Broadcaster(gateway)
    payload = protocol.encode(protocol.message_frame("u_bench", protocol.Scope.ALL, "hello"))
    targets = [Target(f"R{i:09d}AAA=", f"u_{i}", None) for i in range(recipients)]
    warm = broadcaster.fan_out(targets, payload)  # connections, loop, caches
    if warm.delivered != recipients:
        raise RuntimeError(f"fan-out delivered {warm.delivered} of {recipients}")
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        broadcaster.fan_out(targets, payload)
        times.append(time.perf_counter() - started)
    transport = getattr(gateway, "_transport", None)
    if transport is not None and hasattr(transport, "close"):
        transport.close()
    return median(times) * 1000


def measure(
    sizes: tuple[int, ...] = SIZES,
    recipients: int = 100,
    appends: int = 200,
    reps: int = 3,
    progress: Any = print,
) -> dict[str, Any]:
    import boto3
    from moto import mock_aws

    from chalicelib.message_log import MessageLog
    from chalicelib.table import DynamoDB
    from deploy.create_table import create_table

    moto_speedups.install()
    out: dict[str, Any] = {"replay": [], "recipients": recipients, "appends": appends}
    out["wire"] = {label: [wire(n, text) for n in sizes] for label, text in TEXTS.items()}
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client, TABLE)
        reads = _ReadsClient(client)
        log = MessageLog(DynamoDB(reads, TABLE))
        for n in sizes:
            row = _replay(log, reads, n, reps)
            progress(f"  replay {n}: {row['ms']:.1f} ms, {row['items']} items")
            out["replay"].append(row)
        times = []
        for i in range(appends):
            started = time.perf_counter()
            log.append("room:writes", {"type": "message", "from": "u_bench", "text": f"m{i}"})
            times.append(time.perf_counter() - started)
        out["append_ms"] = median(times) * 1000
    with Child("bench.sink") as sink:
        url = sink.recv(30)["url"]
        out["fanout_ms"] = _fanout_ms(url, recipients, max(reps, 5))
        out["ephemeral"] = ephemeral_cost(url, min(recipients, 10))
    out["send_with_log_ms"] = out["append_ms"] + out["fanout_ms"]
    out["log_share"] = out["append_ms"] / out["send_with_log_ms"]
    progress(
        f"  append {out['append_ms']:.2f} ms, fan-out to {recipients} {out['fanout_ms']:.2f} ms"
    )
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "## Resume cost (moto DynamoDB, in process)",
        "",
        "Replaying missed messages of one stream (`Replayer.resume`, posts only counted):",
        "",
        "| missed | time (ms) | requests | items read | RCU (moto) | RCU (modelled) | posts |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["replay"]:
        lines.append(
            f"| {row['missed']} | {row['ms']:.1f} | {row['requests']} | {row['items']} "
            f"| {row['rcu']:g} | {row['modelled_rcu']:g} | {row['posts']} |"
        )
    lines += [
        "",
        "Replay on the wire, before (one `message` frame per post) and after (`replay` frames"
        " of up to 32 KB); metered = API Gateway messages, per started 32 KB of each post:",
        "",
        "| messages | missed | posts before | posts after | bytes before | bytes after"
        " | metered before | metered after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, rows in result["wire"].items():
        for row in rows:
            lines.append(
                f"| {label} | {row['missed']} | {row['posts_before']} | {row['posts_after']} "
                f"| {row['bytes_before']:,} | {row['bytes_after']:,} "
                f"| {row['metered_before']} | {row['metered_after']} |"
            )
    eph = result.get("ephemeral")
    if eph:
        logged, fleeting = eph["logged"], eph["ephemeral"]
        lines += [
            "",
            f"DynamoDB calls of one `sendRoom` to a room of {eph['recipients']} other members"
            " (the real handler on moto, every call counted). Both pay the registry read"
            " (GetItem), the per-frame rate limit (UpdateItem) and the room's members (Query);"
            " the log is the head UpdateItem and the message PutItem:",
            "",
            "| send | log writes | all calls |",
            "|---|---:|---|",
            f"| logged | {logged['log_writes']} | {_calls(logged['calls'])} |",
            f"| ephemeral | {fleeting['log_writes']} | {_calls(fleeting['calls'])} |",
        ]
    n = result["recipients"]
    lines += [
        "",
        f"Writing the log, per sent message (median of {result['appends']} appends), next to"
        f" the fan-out to {n} recipients on `bench.sink`:",
        "",
        "| send | time (ms) | vs fan-out alone |",
        "|---|---:|---:|",
        f"| fan-out to {n}, no log | {result['fanout_ms']:.2f} | 1.00x |",
        f"| `MessageLog.append` alone | {result['append_ms']:.2f} "
        f"| {result['append_ms'] / result['fanout_ms']:.2f}x |",
        f"| append + fan-out to {n} | {result['send_with_log_ms']:.2f} "
        f"| {result['send_with_log_ms'] / result['fanout_ms']:.2f}x |",
        "",
        f"The log is {result['log_share']:.0%} of a send here. moto answers faster than"
        " DynamoDB (a few ms per write, two writes per append), so on AWS the share is larger;"
        " the request and item counts carry over as they are.",
        "",
    ]
    return "\n".join(lines)


def _calls(calls: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in calls.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resume_cost")
    parser.add_argument("--out", default=str(RESULTS_DIR / "resume.md"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    print("resume cost (moto)")
    result = measure()
    text = markdown(result)
    print()
    print(text)
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"written: {path.name} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
