"""Cold start and size: ``import app`` in fresh interpreters, the deployment zip, and the peak
memory of a 10,000-recipient fan-out.

- import: ``python -c "import app"`` timed inside fresh subprocesses (median of ``reps``), and
  one ``python -X importtime`` run for the heaviest imports;
- first event: import plus building the container's collaborators (``get_switchboard()``:
  settings, boto3 session, DynamoDB client, management gateway), what a cold Lambda pays
  before its first handler line;
- zip: ``python -m deploy.package`` into a temporary folder (offline, no credentials);
- memory: ``python -m bench.memory`` subprocesses fan one payload out to 10,000 recipients
  through the real Broadcaster + ManagementApi, against ``bench.sink`` in another process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from bench.common import PROJECT_DIR, Child, median

IMPORT_SNIPPET = (
    "import time; t = time.perf_counter(); import app; "
    "print(round((time.perf_counter() - t) * 1000, 2))"
)
FIRST_EVENT_SNIPPET = (
    "import time; t = time.perf_counter(); import app; a = time.perf_counter(); "
    "app.get_switchboard(); b = time.perf_counter(); "
    "print(round((a - t) * 1000, 2), round((b - a) * 1000, 2))"
)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "PYTHONPATH": str(PROJECT_DIR),
            "PYTHONDONTWRITEBYTECODE": "1",
            "CONNECTIONS_TABLE": "bench-connections",
            "AUTH_MODE": "none",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def _python(code: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", code],
        cwd=str(PROJECT_DIR),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def import_times(reps: int = 7) -> dict[str, Any]:
    _python(IMPORT_SNIPPET)  # warm the OS file cache and __pycache__
    imports = [float(_python(IMPORT_SNIPPET).stdout.split()[-1]) for _ in range(reps)]
    first = [_python(FIRST_EVENT_SNIPPET).stdout.split() for _ in range(reps)]
    importtime = _python("import app", "-X", "importtime").stderr
    # What ``import app`` spends its time on: modules one or two levels under it.
    top = []
    for line in importtime.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line[12:].split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2]
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        if 1 <= depth <= 2:
            top.append(
                {
                    "module": name.strip(),
                    "depth": depth,
                    "cumulative_ms": round(int(parts[1]) / 1000, 1),
                }
            )
    top.sort(key=lambda entry: -entry["cumulative_ms"])
    return {
        "import_ms": median(imports),
        "import_runs_ms": imports,
        "first_event_ms": median(float(a) + float(b) for a, b in first),
        "collaborators_ms": median(float(b) for _, b in first),
        "heaviest_imports": top[:8],
    }


def zip_size(stage: str = "dev") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="switchboard-bench-") as out:
        subprocess.run(
            [sys.executable, "-m", "deploy.package", "--stage", stage, "--out", out],
            cwd=str(PROJECT_DIR),
            env=_env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        path = Path(out) / "deployment.zip"
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
        return {
            "zip_bytes": path.stat().st_size,
            "files": len(infos),
            "uncompressed_bytes": sum(info.file_size for info in infos),
        }


def memory(
    recipients: int = 10000, transports: tuple[str, ...] = ("async", "boto3")
) -> dict[str, Any]:
    out: dict[str, Any] = {"recipients": recipients}
    with Child("bench.sink") as sink:
        url = sink.recv(30)["url"]
        for transport in transports:
            for mode in ("rss", "tracemalloc"):
                result = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.memory",
                        "--url",
                        url,
                        "--recipients",
                        str(recipients),
                        "--transport",
                        transport,
                        "--mode",
                        mode,
                    ],
                    cwd=str(PROJECT_DIR),
                    env=_env(),
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=True,
                )
                out.setdefault(transport, {}).update(
                    json.loads(result.stdout.strip().splitlines()[-1])
                )
        out["sink_posts"] = sink.request(cmd="count")["posts"]
    return out


# --- import app as Lambda would: the zip's contents and boto3, nothing else -----------------

# What the Lambda Python runtime provides besides the standard library: boto3 and its
# dependencies (the zip deliberately leaves them out, requirements.txt).
BOTO3_MODULES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


def runtime_python() -> tuple[str, str]:
    """The interpreter to import with, and its version: the Lambda runtime's (the template's
    ``RUNTIME``; ``LAMBDA_RUNTIME_PYTHON`` names one, else ``python3.X`` on PATH) when this
    machine has it, so that bytecode the zip ships for it is used; else this one."""
    import shutil

    from deploy import template

    version = template.RUNTIME.removeprefix("python")
    found = os.environ.get("LAMBDA_RUNTIME_PYTHON") or shutil.which(f"python{version}")
    if found:
        probe = subprocess.run(
            [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return found, version
    return sys.executable, f"{sys.version_info[0]}.{sys.version_info[1]}"


def _lambda_like_paths(scratch: Path, python: str, stage: str = "dev") -> tuple[Path, Path, int]:
    """The deployment zip unpacked, and a folder with boto3 and its dependencies only,
    compiled for ``python`` as the Lambda runtime ships them (this interpreter's own
    site-packages already hold its bytecode: linked instead)."""
    import importlib.util
    import shutil

    out = scratch / "package"
    subprocess.run(
        [sys.executable, "-m", "deploy.package", "--stage", stage, "--out", str(out)],
        cwd=str(PROJECT_DIR),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    code = scratch / "task"
    with zipfile.ZipFile(out / "deployment.zip") as zf:
        zf.extractall(code)
    runtime = scratch / "runtime"
    runtime.mkdir()
    for name in BOTO3_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        if python == sys.executable:
            (runtime / source.name).symlink_to(source)
        elif source.is_dir():
            shutil.copytree(source, runtime / source.name, ignore=shutil.ignore_patterns("*.pyc"))
        else:
            shutil.copyfile(source, runtime / source.name)
    if python != sys.executable:
        subprocess.run(
            [
                python,
                "-m",
                "compileall",
                "-q",
                "--invalidation-mode",
                "unchecked-hash",
                str(runtime),
            ],
            capture_output=True,
            timeout=600,
            check=True,
        )
    return code, runtime, (out / "deployment.zip").stat().st_size


def _isolated_import(module: str, paths: tuple[Path, ...], python: str = sys.executable) -> float:
    """ms to import ``module`` in a fresh interpreter that sees only the standard library and
    ``paths`` (``-I -S``: no site-packages, no environment, no current directory) and, like
    Lambda's read-only /var/task, writes no bytecode (``-B``): modules the zip ships no
    bytecode for are compiled on every cold start."""
    listed = [str(p) for p in paths]
    code = (
        f"import sys, time; sys.path[:0] = {listed!r}; t = time.perf_counter(); "
        f"import {module}; print(round((time.perf_counter() - t) * 1000, 3))"
    )
    env = {k: v for k, v in _env().items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [python, "-I", "-S", "-B", "-c", code],
        cwd=str(paths[0]),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(result.stdout.split()[-1])


def zip_import(reps: int = 15) -> dict[str, Any]:
    """``import app`` from the unpacked zip (with boto3 only) against ``import boto3`` alone,
    ``reps`` paired runs in fresh interpreters (the order inside each pair alternates)."""
    python, version = runtime_python()
    with tempfile.TemporaryDirectory(prefix="switchboard-coldstart-") as tmp:
        code, runtime, zip_bytes = _lambda_like_paths(Path(tmp), python)
        paths = (code, runtime)
        _isolated_import("app", paths, python)  # warm the OS file cache
        _isolated_import("boto3", paths, python)
        apps: list[float] = []
        botos: list[float] = []
        for n in range(reps):
            order = ("app", "boto3") if n % 2 == 0 else ("boto3", "app")
            for module in order:
                took = _isolated_import(module, paths, python)
                (apps if module == "app" else botos).append(took)
        ratios = [a / b for a, b in zip(apps, botos, strict=True)]
        return {
            "reps": reps,
            "import_app_ms": median(apps),
            "import_boto3_ms": median(botos),
            "ratio": median(apps) / median(botos),
            "pair_ratio_median": median(ratios),
            "zip_bytes": zip_bytes,
            "python": version,
        }


def coldstart_markdown(earlier: dict[str, Any] | None, result: dict[str, Any]) -> str:
    from bench import before

    rows = ([("before", earlier)] if earlier else []) + [("after", result)]
    lines = [
        "| | commit | `import app` (zip + boto3) | `import boto3` alone | ratio | zip |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for label, row in rows:
        commit = row.get("commit") or before.short_commit()
        lines.append(
            f"| {label} | `{commit}` | {row['import_app_ms']:.0f} ms "
            f"| {row['import_boto3_ms']:.0f} ms | **{row['ratio']:.2f}x** "
            f"| {row['zip_bytes'] / 1024:.0f} KB ({row['zip_bytes']:,} bytes) |"
        )
    lines += [
        "",
        f"Medians of {result['reps']} paired runs in fresh `python{result.get('python', '')} "
        "-I -S -B` interpreters that see only the unpacked `deployment.zip` and boto3 with its "
        "dependencies (what the Lambda runtime provides, compiled) and write no bytecode (Lambda's "
        "/var/task is read-only): `python -m bench.coldstart --before REF`.",
    ]
    return "\n".join(lines)


def coldstart_main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m bench.coldstart")
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--before", default=None, help="also measure this commit's app (git ref)")
    parser.add_argument("--json", default=None, help="write the figures here (JSON)")
    parser.add_argument("--out", default=None, help="write the markdown table here")
    args = parser.parse_args(argv)
    earlier = None
    if args.before:
        from bench import before

        earlier = before.at(
            args.before, "bench.coldstart", ["--reps", str(args.reps), "--json", "{json}"]
        )
        print(
            f"before ({earlier['commit']}): import app {earlier['import_app_ms']:.1f} ms vs "
            f"import boto3 {earlier['import_boto3_ms']:.1f} ms: {earlier['ratio']:.2f}x; "
            f"zip {earlier['zip_bytes'] / 1024:.0f} KB"
        )
    result = zip_import(args.reps)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({"before": earlier, "after": result}, indent=2))
    print(
        f"import app (zip + boto3) {result['import_app_ms']:.1f} ms vs import boto3 "
        f"{result['import_boto3_ms']:.1f} ms: {result['ratio']:.2f}x "
        f"({result['reps']} paired runs); zip {result['zip_bytes'] / 1024:.0f} KB"
    )
    if args.out:
        Path(args.out).write_text(coldstart_markdown(earlier, result) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(coldstart_main())
