"""Results -> ``bench/results/``: the JSON, a markdown summary and ``fanout.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

NAMES = {
    "seed": "seed (Scan + sequential boto3 loop)",
    "switchboard": "switchboard",
    "switchboard-boto3": "switchboard, boto3 transport",
    "limit": "limit (raw POSTs)",
}


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "–"
    if entry.get("skipped"):
        return f"not run (~{entry['estimate_s']:.0f} s)"
    if entry.get("delivery_s") is None:
        return "incomplete"
    return f"{_ms(entry['delivery_s'])} ({entry['posts_per_s']:,.0f}/s)"


def _ratio(value: float | None, digits: int = 2, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def fanout_only_fraction(line: dict[str, Any], variant: str = "switchboard") -> float | None:
    """limit / (delivery - registry read in the same runs): the fan-out without moto's read.

    The read in the run is the time to the first arrival less the limit's time to its first
    arrival (one post's latency: the limit reads nothing)."""
    entry = line.get(variant, {})
    limit = line.get("limit", {}).get("delivery_s")
    if not (entry.get("delivery_s") and entry.get("read_in_run_s") is not None and limit):
        return None
    posting = entry["delivery_s"] - entry["read_in_run_s"]
    return limit / posting if posting > 0 else None


def speedup_without_reads(line: dict[str, Any]) -> float | None:
    """seed / switchboard, each less its registry read in the same runs."""
    posting = []
    for variant in ("seed", "switchboard"):
        entry = line.get(variant, {})
        if not (entry.get("delivery_s") and entry.get("read_in_run_s") is not None):
            return None
        posting.append(entry["delivery_s"] - entry["read_in_run_s"])
    return posting[0] / posting[1] if posting[1] > 0 else None


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    out: list[tuple[str, str, bool | None]] = []
    lines = {(ln["n"], ln["latency_ms"]): ln for ln in results.get("fanout_summary", [])}
    at20 = lines.get((1000, 20.0)) or lines.get((1000, 20))
    at0 = lines.get((1000, 0.0)) or lines.get((1000, 0))
    if at20:
        speedup = at20.get("speedup_vs_seed")
        out.append(
            (
                "20 ms, 1,000 recipients: >= 20x the seed",
                f"{_ratio(speedup, 1, 'x')} end to end; "
                f"{_ratio(speedup_without_reads(at20), 1, 'x')} without the registry reads",
                speedup is not None and speedup >= 20,
            )
        )
        fraction = at20.get("fraction_of_limit")
        only = fanout_only_fraction(at20)
        out.append(
            (
                "20 ms, 1,000 recipients: >= 0.9 of the limit",
                f"{_ratio(fraction)} end to end; {_ratio(only)} without the registry read",
                fraction is not None and fraction >= 0.9,
            )
        )
    if at0:
        fraction = at0.get("fraction_of_limit")
        only = fanout_only_fraction(at0)
        out.append(
            (
                "0 ms, 1,000 recipients: >= 0.5 of the limit",
                f"{_ratio(fraction)} end to end; {_ratio(only)} without the registry read",
                fraction is not None and fraction >= 0.5,
            )
        )
    registry = results.get("registry", {}).get("rows", [])
    if registry:
        examined = {row["send_user"]["examined"] for row in registry}
        out.append(
            (
                "targeted send reads only the target's items",
                f"examines {sorted(examined)} items at table sizes "
                + ", ".join(f"{row['table_items']:,}" for row in registry),
                len(examined) == 1,
            )
        )
    cold = results.get("coldstart", {})
    if "import_ms" in cold:
        out.append(("app import < 300 ms", f"{cold['import_ms']:.0f} ms", cold["import_ms"] < 300))
    if "zip_bytes" in cold:
        out.append(("zip < 1 MB", f"{cold['zip_bytes']:,} bytes", cold["zip_bytes"] < 1_000_000))
    return out


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"# switchboard benchmarks ({results['mode']} run)",
        "",
        f"{results['started']} · commit `{results.get('commit', '?')}` · {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, {m['os']}, Python {m['python']} · load average "
        f"{results['load_before']} before, {results['load_after']} after · "
        f"{results['seconds']:.0f} s",
        "",
    ]
    summary = results.get("fanout_summary")
    if summary:
        lines += [
            "## Fan-out: broadcast to N WebSocket clients on the local gateway",
            "",
            "Time from the broadcast call until the last client has the message (median of "
            f"{results['fanout']['plan']['reps']} interleaved runs; posts/s = N / time). "
            "`@connections` latency is added by the gateway to every call. Concurrency 64 "
            "(`FANOUT_WORKERS`) for switchboard and the limit. *read* = the registry read "
            "in the same runs on moto (time to the first arrival less the limit's; seed: its "
            "Scan, switchboard: 8 shard Queries), and *without registry read* = limit / "
            "(delivery - read).",
            "",
            "| N | latency | " + " | ".join(NAMES[v] for v in NAMES) + " | speed-up vs seed | "
            "fraction of limit | … without registry read | read: seed / switchboard |",
            "|---:|---:|" + "---:|" * (len(NAMES) + 4),
        ]
        for line in summary:
            seed_read = line.get("seed", {}).get("read_in_run_s")
            sb_read = line.get("switchboard", {}).get("read_in_run_s")
            lines.append(
                f"| {line['n']:,} | {line['latency_ms']:g} ms | "
                + " | ".join(_cell(line.get(v)) for v in NAMES)
                + f" | {_ratio(line.get('speedup_vs_seed'), 1, 'x')}"
                + f" | {_ratio(line.get('fraction_of_limit'))}"
                + f" | {_ratio(fanout_only_fraction(line))}"
                + f" | {_ms(seed_read)} / {_ms(sb_read)} |"
            )
        lines.append("")
    registry = results.get("registry")
    if registry:
        lines += [
            "## Registry cost per send (moto DynamoDB)",
            "",
            "Table = live connections + half as many expired + a quarter as many stale "
            "connection items + two room memberships per live connection. Items examined "
            "(`ScannedCount`) and read capacity modelled from the examined items' sizes "
            "(0.5 RCU per started 4 KB per request; moto reports a flat 1.0 per request).",
            "",
            "| live | table items | `sendMessage` (user Query) | `broadcastAll` (8 shard Queries) | seed Scan |",
            "|---:|---:|---:|---:|---:|",
        ]
        for row in registry["rows"]:
            cells = []
            for key in ("send_user", "broadcast", "seed_scan"):
                r = row[key]
                cells.append(
                    f"{r['examined']:,} items, {r['rcu']:g} RCU, {r['requests']} req, {r['ms']:.0f} ms"
                )
            lines.append(
                f"| {row['live']:,} | {row['table_items']:,} | " + " | ".join(cells) + " |"
            )
        lines.append("")
    cold = results.get("coldstart")
    if cold:
        lines += ["## Cold start, size, memory", ""]
        if "import_ms" in cold:
            heavy = ", ".join(
                f"{h['module']} {h['cumulative_ms']:.0f} ms" for h in cold["heaviest_imports"][:5]
            )
            lines.append(
                f"- `import app`: **{cold['import_ms']:.0f} ms** (median of fresh interpreters; "
                f"heaviest: {heavy}); first event incl. building the clients: "
                f"{cold['first_event_ms']:.0f} ms"
            )
        if "zip_bytes" in cold:
            lines.append(
                f"- `deployment.zip`: **{cold['zip_bytes']:,} bytes** ({cold['files']} files, "
                f"{cold['uncompressed_bytes']:,} uncompressed)"
            )
        mem = cold.get("memory")
        if mem:
            for transport in ("async", "boto3"):
                if transport in mem:
                    t = mem[transport]
                    lines.append(
                        f"- {mem['recipients']:,}-recipient fan-out ({transport} transport, local "
                        f"sink): peak RSS **{t['rss_peak_mib']} MiB** (+{t['rss_growth_mib']} MiB "
                        f"over the warmed-up process), Python allocations peak "
                        f"{t.get('tracemalloc_peak_mib', '–')} MiB, {t['posts_per_s']:,} posts/s"
                    )
        lines.append("")
    prof = results.get("profile")
    if prof:
        lines += [
            f"## Where the time goes ({prof['recipients']:,} recipients, 0 ms, local sink, cProfile)",
            "",
            "| transport | posts/s | CPU profiled | top costs (share of profiled CPU) |",
            "|---|---:|---:|---|",
        ]
        labels = {
            "before": f"async, before (`{prof['before_ref']}`)",
            "after": "async, now",
            "boto3": "boto3 (`MANAGEMENT_TRANSPORT=boto3`)",
        }
        for key in ("before", "after", "boto3"):
            if key == "boto3" and key in prof:
                lines.append(
                    f"| {labels[key]} | {prof[key]['posts_per_s']:,} | – | botocore's request "
                    "pipeline in 64 pool threads (~1 ms CPU per call; not profiled: cProfile "
                    "sees one thread) |"
                )
                continue
            if key in prof:
                p = prof[key]
                cats = ", ".join(
                    f"{name} {v['share'] * 100:.0f}%"
                    for name, v in list(p["by_category"].items())[:4]
                )
                lines.append(
                    f"| {labels[key]} | {p['posts_per_s']:,} | {p['cpu_ms_profiled']:.0f} ms | {cats} |"
                )
        lines.append("")
    checks = targets(results)
    if checks:
        lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
        for name, measured, met in checks:
            lines.append(
                f"| {name} | {measured} | {'yes' if met else 'no' if met is False else '–'} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    summary = results.get("fanout_summary") or []
    latencies = sorted({line["latency_ms"] for line in summary})
    if not latencies:
        return False
    fig, axes = plt.subplots(1, len(latencies), figsize=(6 * len(latencies), 4.5), squeeze=False)
    styles = {
        "seed": ("tab:red", "o"),
        "switchboard": ("tab:blue", "s"),
        "switchboard-boto3": ("tab:orange", "^"),
        "limit": ("tab:green", "D"),
    }
    for ax, latency in zip(axes[0], latencies, strict=True):
        for variant, (color, marker) in styles.items():
            points = [
                (line["n"], line[variant]["delivery_s"])
                for line in summary
                if line["latency_ms"] == latency and line.get(variant, {}).get("delivery_s")
            ]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker=marker, color=color, label=NAMES[variant])
        posting = [
            (line["n"], line["switchboard"]["delivery_s"] - line["switchboard"]["read_in_run_s"])
            for line in summary
            if line["latency_ms"] == latency
            and line.get("switchboard", {}).get("delivery_s")
            and line["switchboard"].get("read_in_run_s") is not None
        ]
        if posting:
            xs, ys = zip(*posting, strict=True)
            ax.plot(
                xs,
                ys,
                linestyle="--",
                marker="s",
                fillstyle="none",
                color="tab:blue",
                label="switchboard less its registry read (moto)",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("recipients (N)")
        ax.set_ylabel("delivery time to all (s)")
        ax.set_title(f"@connections latency {latency:g} ms")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"switchboard fan-out vs the seed design ({results['machine']['cores']} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = results["mode"]
    paths = {"json": out_dir / f"{mode}.json", "md": out_dir / f"{mode}.md"}
    paths["json"].write_text(json.dumps(results, indent=1, default=str) + "\n")
    paths["md"].write_text(markdown(results) + "\n")
    png = out_dir / ("fanout.png" if mode == "quick" else f"fanout-{mode}.png")
    if plot(results, png):
        paths["png"] = png
    return paths
