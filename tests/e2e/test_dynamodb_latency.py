"""``--dynamodb-latency-ms``: every embedded-DynamoDB call is held, calls side by side together.

The option makes the local stack pay AWS-like round trips (``bench/latency.py`` measures 1:1
delivery with it); it must delay each call by the latency and must not serialise the delay,
or a handler that reads concurrently would look as slow as one that reads in sequence.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from local_gateway import EmbeddedDynamoDB
from local_gateway.cli import main

LATENCY_MS = 150.0


def _timed(client: object, calls: int, parallel: bool) -> float:
    def one(_: int) -> None:
        client.list_tables()  # type: ignore[attr-defined]

    started = time.perf_counter()
    if parallel:
        with ThreadPoolExecutor(calls) as pool:
            list(pool.map(one, range(calls)))
    else:
        for n in range(calls):
            one(n)
    return time.perf_counter() - started


@pytest.mark.timeout(60)
def test_each_call_is_held_and_concurrent_calls_wait_together() -> None:
    with EmbeddedDynamoDB() as plain:
        client = plain.client()
        client.list_tables()  # connection and credentials warmed
        base = _timed(client, 3, parallel=False)  # this machine's own cost of three calls
    with EmbeddedDynamoDB(latency_ms=LATENCY_MS) as slow:
        client = slow.client()
        client.list_tables()
        sequential = _timed(client, 3, parallel=False)
        concurrent = _timed(client, 4, parallel=True)
    latency = LATENCY_MS / 1000
    assert sequential >= 3 * latency  # three round trips, one after another
    # Four at once wait once (plus this machine's own work), far below four latencies.
    assert concurrent < 2 * latency + base * 4
    assert concurrent < 4 * latency


def test_a_negative_latency_or_one_for_an_external_dynamodb_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--dynamodb-latency-ms", "-1"])
    assert "--dynamodb-latency-ms must be >= 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--dynamodb-latency-ms", "5", "--dynamodb-endpoint", "http://127.0.0.1:1"])
    assert "embedded DynamoDB only" in capsys.readouterr().err
