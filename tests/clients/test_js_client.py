"""Runs the JavaScript client's own suite (``clients/js``, ``node --test``) from pytest.

Its integration and chaos tests start the local gateway themselves, so ``make test`` covers
the client against the real stack. Node packages come from the lockfile (``npm ci``), again
only when ``node_modules`` is missing or older than the lockfile.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clients.js_packages import install_js_packages

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"
pytestmark = pytest.mark.socket  # its integration and chaos tests start the local gateway


@pytest.mark.timeout(600)
def test_js_client_suite() -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: the JavaScript client's tests need Node >= 20")
    install_js_packages()
    env = {**os.environ, "SWITCHBOARD_PYTHON": sys.executable}
    result = subprocess.run(
        ["node", "--test"],
        cwd=CLIENT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    summary = [line for line in result.stdout.splitlines() if line.startswith(("# ", "not ok"))]
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    assert any(line.startswith("# pass ") for line in summary), result.stdout[-2000:]
