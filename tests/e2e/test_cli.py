"""``python -m local_gateway``: documented flags, the banner, a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from websockets.sync.client import connect

from tests.e2e.helpers import ECHO_APP, REPO_ROOT

FLAGS = [
    "--project-dir", "--stage", "--host", "--port", "--ws-port", "--no-rest", "--schema",
    "--table-env", "--dynamodb-endpoint", "--region", "--auth-mode", "--env", "--idle-timeout",
    "--max-duration", "--integration-timeout", "--send-buffer-limit", "--workers",
    "--latency-ms", "--throttle-rate", "--error-rate", "--fault-seed", "--log-level",
    "--env-file", "--env-from-environ", "--allowed-origin", "--allowed-host", "--max-sockets",
    "--head-timeout", "--keepalive-timeout",
]  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.mark.timeout(30)
def test_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "local_gateway", "--help"],
        capture_output=True, text=True, env=_env(), cwd=REPO_ROOT, check=True,
    ).stdout  # fmt: skip
    for flag in FLAGS:
        assert flag in out, flag


@pytest.mark.timeout(30)
def test_runs_until_ctrl_c(tmp_path: object) -> None:
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "local_gateway", "--project-dir", str(ECHO_APP),
            "--schema", str(ECHO_APP / "schema.json"), "--port", "0", "--ws-port", "0",
            "--auth-mode", "off", "--latency-ms", "1",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "gateway exited early:\n" + "".join(banner)
            banner.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(banner)
        ws_url = re.search(r"WebSocket API\s+(ws://127\.0\.0\.1:\d+/api)", text)
        assert ws_url, text
        assert re.search(r"REST API\s+http://127\.0\.0\.1:\d+", text)
        assert "AUTH_MODE       off" in text
        assert f"python -m websockets '{ws_url.group(1)}?userId=u_123'" in text
        with connect(ws_url.group(1) + "?userId=u_123", open_timeout=5) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
