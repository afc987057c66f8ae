"""``python -m bench [--full] [--only fanout,registry,coldstart,profile]``: run, then write
``bench/results/<quick|full>.{json,md}`` and the fan-out plot."""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import coldstart, fanout, profile_fanout, registry_cost, report, resume_cost
from bench.common import PROJECT_DIR, RESULTS_DIR, load, machine

PARTS = ("fanout", "registry", "coldstart", "profile", "resume")

QUICK = {
    "fanout": fanout.FanoutPlan(sizes=[100, 1000], reps=3, seed_budget_s=60.0),
    "registry": [250, 1000, 2500],
    "memory_transports": ("async",),
    "import_reps": 7,
}
FULL = {
    "fanout": fanout.FanoutPlan(
        sizes=[100, 1000, 2000, 5000, 10000], reps=3, seed_budget_s=150.0, connect_timeout_s=240.0
    ),
    "registry": [250, 1000, 4000, 16000],
    "memory_transports": ("async", "boto3"),
    "import_reps": 15,
}


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=str(PROJECT_DIR),
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--full", action="store_true", help="the larger run (bench-full)")
    parser.add_argument("--only", default=",".join(PARTS), help="comma-separated parts")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    config: dict[str, Any] = FULL if args.full else QUICK
    out_dir = Path(args.out)
    started = time.monotonic()
    results: dict[str, Any] = {
        "mode": "full" if args.full else "quick",
        "started": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": _commit(),
        "machine": machine(),
        "load_before": load(),
    }
    print(f"switchboard bench ({results['mode']}): load average {results['load_before']}")
    if "fanout" in parts:
        print("fan-out (dynamodb, gateway, clients in their own processes)")
        logs = Path(tempfile.mkdtemp(prefix="switchboard-bench-logs-"))
        print(f"  child process logs: {logs}")
        results["fanout"] = fanout.run(config["fanout"], logs)
        results["fanout_summary"] = fanout.summarize(results["fanout"])
    if "registry" in parts:
        print("registry cost (moto)")
        results["registry"] = registry_cost.measure(config["registry"])
    if "coldstart" in parts:
        print("cold start, zip, memory")
        cold = coldstart.import_times(config["import_reps"])
        cold.update(coldstart.zip_size())
        cold["memory"] = coldstart.memory(10000, config["memory_transports"])
        results["coldstart"] = cold
        print(f"  import app {cold['import_ms']:.0f} ms, zip {cold['zip_bytes']:,} bytes")
    if "profile" in parts:
        print("profile: 1,000 recipients, 0 ms")
        results["profile"] = profile_fanout.profile()
    if "resume" in parts:
        print("resume cost (moto)")
        results["resume"] = resume_cost.measure()
    results["load_after"] = load()
    results["seconds"] = time.monotonic() - started
    paths = report.write(results, out_dir)
    print()
    print(report.markdown(results))
    if "resume" in results:
        print(resume_cost.markdown(results["resume"]))
    print(
        "written: "
        + ", ".join(
            str(p.relative_to(PROJECT_DIR)) if p.is_relative_to(PROJECT_DIR) else str(p)
            for p in paths.values()
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
