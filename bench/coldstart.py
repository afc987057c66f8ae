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
