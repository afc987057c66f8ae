"""The Python client's tests import ``switchboard_client`` from the source tree when it is not
installed (``make`` installs it editable from requirements-dev.txt)."""

from __future__ import annotations

import sys
from pathlib import Path

CLIENT_DIR = Path(__file__).resolve().parents[3] / "clients" / "python"

try:
    import switchboard_client  # noqa: F401
except ImportError:
    sys.path.insert(0, str(CLIENT_DIR))
