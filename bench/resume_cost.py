"""Resume cost: what replaying missed messages reads, and what logging each sent message adds.

``python -m bench.resume_cost`` (or ``python -m bench --only resume``), against moto DynamoDB
in this process:

- **replay**: a stream holds ``n`` messages (10, 100, 500) a client missed; one
  ``Replayer.resume`` replays them all through a ``post`` that only counts. Time, DynamoDB
  requests, items read and the read capacity moto reports (``ReturnConsumedCapacity``, asked
  for by a ``StatsClient``-like wrapper that also counts the GetItem of the stream's head).
  The ``@connections`` posts themselves are not in it: on AWS they are ~10-20 ms each, in
  order (see ``chalicelib/replay.py``), and dominate a real resume.
- **log write**: the extra cost per sent message of the log, in one run: ``MessageLog.append``
  (one UpdateItem + one PutItem) next to the fan-out of the same message to ``recipients``
  connections on ``bench.sink`` (a gateway-free ``@connections`` answering 200 at once), so a
  send costs ``append + fan-out`` with the log and ``fan-out`` without it.

moto answers in well under a millisecond, DynamoDB in a few: the write ratio here is a lower
bound of the log's share; the items and capacity units are the part that carries over.
"""

from __future__ import annotations

import argparse
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


def _replay(log: Any, reads: _ReadsClient, n: int, reps: int) -> dict[str, Any]:
    from chalicelib.management_api import Outcome
    from chalicelib.protocol import Resume
    from chalicelib.replay import Replayer

    room = f"r{n}"
    stream = f"room:{room}"
    for i in range(n):
        log.append(stream, {"type": "message", "from": "u_bench", "text": f"missed {i}"})
    replayer = Replayer(log, max_replay=max(SIZES + (n,)))
    posted = 0

    def post(_: bytes) -> Outcome:
        nonlocal posted
        posted += 1
        return Outcome.DELIVERED

    times = []
    for _ in range(reps):
        posted = 0
        stats = reads.stats
        before = (stats.queries, stats.items_returned, stats.capacity_units, reads.modelled_rcu)
        started = time.perf_counter()
        frame = replayer.resume(Resume(((stream, 0),)), "u_bench", frozenset({room}), post)
        times.append(time.perf_counter() - started)
        assert frame is not None and frame["streams"][stream]["replayed"] == n == posted
    requests = reads.stats.queries - before[0]
    return {
        "missed": n,
        "ms": median(times) * 1000,
        "requests": requests,
        "items": reads.stats.items_returned - before[1],
        "rcu": reads.stats.capacity_units - before[2],
        "modelled_rcu": reads.modelled_rcu - before[3],
    }


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
        "| missed | time (ms) | requests | items read | RCU (moto) | RCU (modelled) | ms/message |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["replay"]:
        lines.append(
            f"| {row['missed']} | {row['ms']:.1f} | {row['requests']} | {row['items']} "
            f"| {row['rcu']:g} | {row['modelled_rcu']:g} | {row['ms'] / row['missed']:.3f} |"
        )
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
