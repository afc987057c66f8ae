"""``make chalice-local`` against a running ``make run``, in both auth modes: ``chalice local``
(port 8002) answers ``/health`` 200 and serves the routes from the same embedded DynamoDB, with
``make run``'s auth mode and secret, and never asks AWS (before, the stage's config.json
``AUTH_MODE=jwt`` won and ``/health`` asked the real SSM for the secret: 503)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local_gateway.cli import write_env_file
from tests.e2e.helpers import REPO_ROOT
from tests.gateways import GatewayFactory, poll
from tests.helpers import JWT_ENV, token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")
    except OSError:
        return 0, None


@pytest.fixture
def chalice_local(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[bytes]] = []

    def start(environment: dict[str, str]) -> str:
        env_file = tmp_path / "local.env"
        write_env_file(str(env_file), environment)
        port = free_port()
        # Nothing of this machine's AWS configuration: only what make run wrote may count.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.pop("JWT_SECRET", None)
        process = subprocess.Popen(
            [sys.executable, "-m", "local_gateway.chalice_local", "--env-file", str(env_file)]
            + ["--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        status, _ = poll(lambda: get(url + "/health"), lambda r: r[0] != 0, timeout=60)
        assert status != 0, "chalice local did not start"
        return url

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.timeout(120)
def test_chalice_local_works_with_auth_off(
    gateway_factory: GatewayFactory, chalice_local: Any
) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="none", rest_port=None)
    url = chalice_local(gw.environment)
    assert get(url + "/health") == (200, {"status": "ok"})
    status, body = get(url + "/connections")  # the same embedded DynamoDB, no token needed
    assert (status, body["count"]) == (200, 0)


@pytest.mark.timeout(120)
def test_chalice_local_works_with_jwt(gateway_factory: GatewayFactory, chalice_local: Any) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="jwt", env=dict(JWT_ENV), rest_port=None)
    url = chalice_local(gw.environment)
    assert get(url + "/health") == (200, {"status": "ok"})
    assert get(url + "/connections")[0] == 401  # make run's auth mode, not a weaker one
    admin = {"Authorization": f"Bearer {token('ops', role='admin')}"}
    status, body = get(url + "/connections", admin)
    assert (status, body["count"]) == (200, 0)
