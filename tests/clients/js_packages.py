"""The JS client's packages, installed once from its lockfile (``npm ci``) for the suites that
run it: a suite installs what it needs rather than skipping."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "js"
_lock = threading.Lock()


def install_js_packages() -> None:
    """``npm ci`` in clients/js unless node_modules is as new as the lockfile."""
    with _lock:
        lock = CLIENT_DIR / "package-lock.json"
        stamp = CLIENT_DIR / "node_modules" / ".package-lock.json"  # npm writes it on install
        if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
            return
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENT_DIR, check=True, timeout=300
        )
