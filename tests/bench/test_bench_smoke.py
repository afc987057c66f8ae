"""Smoke-size runs of every benchmark part, so bench/ cannot rot (the real runs: make bench)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench import (
    coldstart,
    fanout,
    profile_fanout,
    publisher_order,
    quota,
    registry_cost,
    report,
    resume_cost,
)
from bench.common import load, machine

pytestmark = [pytest.mark.socket, pytest.mark.timeout(120)]  # the benchmarks run the gateway


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    logs = tmp_path_factory.mktemp("bench-logs")
    plan = fanout.FanoutPlan(sizes=[20], latencies_ms=[0.0], reps=1, seed_budget_s=10.0)
    started = time.monotonic()
    out = {
        "mode": "smoke",
        "started": "now",
        "commit": "test",
        "machine": machine(),
        "load_before": load(),
        "fanout": fanout.run(plan, Path(logs), progress=lambda _: None),
        "registry": registry_cost.measure([20], reps=1, progress=lambda _: None),
        "coldstart": {
            **coldstart.import_times(1),
            **coldstart.zip_size(),
            "memory": coldstart.memory(200, ("async",)),
        },
        "profile": profile_fanout.profile(recipients=50, rounds=1, progress=lambda _: None),
        "load_after": load(),
    }
    out["fanout_summary"] = fanout.summarize(out["fanout"])
    out["seconds"] = time.monotonic() - started
    return out


def test_every_fanout_variant_reaches_every_client(results: dict) -> None:
    (line,) = results["fanout_summary"]
    for variant in fanout.VARIANTS:
        assert line[variant]["delivery_s"] is not None, variant
        assert line[variant]["incomplete"] == 0 and line[variant]["failed"] == 0
    assert line["speedup_vs_seed"] > 0 and line["fraction_of_limit"] > 0
    assert line["switchboard"]["read_s"] is not None


def test_registry_cost_targeted_send_reads_only_the_target(results: dict) -> None:
    (row,) = results["registry"]["rows"]
    assert row["send_user"]["examined"] == 4  # two live + two expired connections
    assert row["send_user"]["targets"] == 2
    assert row["seed_scan"]["examined"] == row["table_items"]
    assert results["registry"]["checks"] == [{"live": 20, "same_answers_as_moto": True}]


def test_cold_start_zip_and_memory(results: dict) -> None:
    cold = results["coldstart"]
    assert cold["import_ms"] > 0 and cold["zip_bytes"] < 1_000_000
    assert cold["memory"]["async"]["delivered"] == 200


def test_profile_and_report(results: dict, tmp_path: Path) -> None:
    assert results["profile"]["after"]["posts_per_s"] > 0
    text = report.markdown(results)
    for heading in ("## Fan-out", "## Registry cost", "## Cold start", "## Where the time goes"):
        assert heading in text
    paths = report.write(results, tmp_path)
    assert paths["json"].exists() and paths["md"].exists()


def test_resume_cost_replays_every_missed_message_and_times_the_log() -> None:
    out = resume_cost.measure(
        sizes=(3, 7), recipients=5, appends=3, reps=1, progress=lambda _: None
    )
    assert [row["missed"] for row in out["replay"]] == [3, 7]
    for row in out["replay"]:
        assert row["requests"] == 2  # the stream head, then one Query
        assert row["items"] == row["missed"] + 1
        assert row["modelled_rcu"] == 1.0  # 0.5 per request: small items
        assert row["posts"] == 1  # a few short messages: one replay frame
    for rows in out["wire"].values():
        for row in rows:
            assert row["posts_before"] == row["metered_before"] == row["missed"]
            assert row["posts_after"] <= row["posts_before"]
    short = out["wire"]["short"]
    assert [row["posts_after"] for row in short] == [1, 1]
    # An ephemeral send writes nothing to the log; a logged one writes the head and the item.
    assert out["ephemeral"]["ephemeral"]["log_writes"] == 0
    assert out["ephemeral"]["logged"]["log_writes"] == 2
    assert "PutItem" not in out["ephemeral"]["ephemeral"]["calls"]
    assert out["append_ms"] > 0 and out["fanout_ms"] > 0
    text = resume_cost.markdown(out)
    assert "## Resume cost" in text and "| 7 |" in text and "| ephemeral | 0 |" in text


def test_quota_aimd_throttles_less_than_fixed_concurrency() -> None:
    plan = quota.QuotaPlan(
        senders=2, recipients=100, account_rps=200, account_burst=20, initial_rate=64
    )
    out = quota.run(plan, progress=lambda _: None)
    assert out["aimd"]["recipients"] == out["off"]["recipients"] == 200
    assert out["aimd"]["failed"] == 0 and out["aimd"]["delivered"] == 200
    assert out["aimd"]["throttled_share"] < out["off"]["throttled_share"]
    assert "| 429 share of all posts |" in quota.markdown(out)


def test_publisher_order_one_in_flight_logs_in_send_order() -> None:
    out = publisher_order.measure(n=8, rounds=1, progress=lambda _: None)
    assert out["one_in_flight"]["inversions"] == [0]
    assert out["pipelined"]["per_s"] > 0 and out["one_in_flight"]["per_s"] > 0
    assert "| one in flight" in publisher_order.markdown(out)
