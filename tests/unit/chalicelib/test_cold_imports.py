"""A cold start imports only what the first invocation needs.

``import app`` is every container's first cost (Lambda bills the init phase and makes the
first frame wait for it). PyJWT is needed only with ``AUTH_MODE=jwt`` and the asyncio/h11
``@connections`` transport only when something is posted, so neither may load with the app:
``bench/coldstart.py`` measures the difference against ``import boto3`` alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LAZY = ("jwt", "h11", "asyncio", "chalicelib.transport", "chalicelib.continuation")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys; {code}; import json; print(json.dumps(sorted(sys.modules)))"
    env = dict(os.environ, CONNECTIONS_TABLE="t", AUTH_MODE="none", PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    modules: list[str] = json.loads(out.stdout.splitlines()[-1])
    return modules


def test_importing_the_app_loads_no_jwt_and_no_transport() -> None:
    loaded = _loaded_after("import app")
    assert "chalicelib.service" in loaded  # the probe saw the app
    assert [m for m in LAZY if m in loaded] == []


def test_the_transport_and_jwt_load_when_first_used() -> None:
    loaded = _loaded_after(
        "import app; from chalicelib import management_api; "
        "management_api._response_outcome(ValueError()); "
        "from chalicelib.auth import AuthError, verify_token; from chalicelib.config import "
        "Settings; s = Settings(table_name='t', auth_mode='jwt', jwt_secret='x' * 40)\n"
        "try:\n    verify_token('a.b.c', s)\nexcept AuthError:\n    pass"
    )
    assert "chalicelib.transport" in loaded and "h11" in loaded and "jwt" in loaded
