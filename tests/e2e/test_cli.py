"""``python -m local_gateway``: documented flags, the banner, a clean Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.e2e.helpers import ECHO_APP, REPO_ROOT

FLAGS = [
    "--project-dir", "--stage", "--host", "--port", "--ws-port", "--no-rest", "--schema",
    "--table-env", "--dynamodb-endpoint", "--dynamodb-latency-ms", "--region", "--auth-mode", "--env", "--idle-timeout",
    "--max-duration", "--integration-timeout", "--send-buffer-limit", "--workers",
    "--latency-ms", "--throttle-rate", "--error-rate", "--fault-seed", "--log-level",
    "--custom-domain", "--base-path", "--write-env-file",
    "--account-rps", "--account-burst",
    "--env-file", "--env-from-environ", "--allowed-origin", "--allowed-host", "--max-sockets",
    "--head-timeout", "--keepalive-timeout", "--generate-secret",
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


@pytest.mark.timeout(30)
def test_writes_the_app_environment_for_chalice_local_and_removes_it(tmp_path: Path) -> None:
    env_file = tmp_path / "local.env"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "local_gateway", "--project-dir", str(ECHO_APP),
            "--schema", str(ECHO_APP / "schema.json"), "--port", "0", "--ws-port", "0",
            "--no-rest", "--write-env-file", str(env_file), "--custom-domain", "Chat.Example.com",
            "--base-path", "/v1/",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        text = ""
        while "Ctrl-C" not in text:
            line = proc.stdout.readline()
            assert line, "gateway exited early:\n" + text
            text += line
        assert "custom domain   chat.example.com/v1/@connections/{connectionId}" in text
        assert env_file.stat().st_mode & 0o077 == 0  # dummy credentials: owner only
        shell = subprocess.run(
            ["sh", "-c", f"set -a; . '{env_file}'; env"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        loaded = dict(line.partition("=")[::2] for line in shell.splitlines() if "=" in line)
        assert loaded["AWS_ENDPOINT_URL_DYNAMODB"].startswith("http://127.0.0.1:")
        assert loaded["AWS_REGION"] and loaded["CONNECTIONS_TABLE"] == "echo-fixture-connections"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api", loaded["APIGW_MANAGEMENT_ENDPOINT"])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert not env_file.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_base_path_needs_a_custom_domain() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "local_gateway", "--base-path", "v1"],
        capture_output=True, text=True, env=_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 2 and "--base-path needs --custom-domain" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--account-burst", "5"],
        ["--account-rps", "0"],
        ["--account-rps", "9", "--account-burst", "0.5"],
    ],
)
def test_a_bad_account_quota_is_a_usage_error(argv: list[str]) -> None:
    from local_gateway import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2


@pytest.mark.timeout(120)
def test_make_run_starts_the_switchboard_stack_that_answers_health() -> None:
    """The README's first command, as written in the Makefile (ephemeral ports, so it can run
    beside a developer's own ``make run``): the app starts with the embedded queue wired and
    its job key generated, and /health says ok."""
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "run", "ARGS=--port 0 --ws-port 0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=REPO_ROOT,
        start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner: list[str] = []
        while True:  # the banner's last line, or the process ending, whichever comes first
            line = proc.stdout.readline()
            assert line, "make run exited early:\n" + "".join(banner)
            banner.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(banner)
        rest = re.search(r"REST API\s+(http://127\.0\.0\.1:\d+)", text)
        assert rest, text
        assert "CONTINUATION_QUEUE_URL" in text
        with urllib.request.urlopen(rest.group(1) + "/health", timeout=30) as answer:
            assert answer.status == 200, text
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
