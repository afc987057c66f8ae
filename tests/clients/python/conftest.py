"""The Python client's tests import ``switchboard_client`` from the source tree next to them,
ahead of any installed copy: ``make`` installs it editable, and an editable install made from
another checkout of the repository would otherwise be the one tested."""

from __future__ import annotations

import sys
from pathlib import Path

CLIENT_DIR = Path(__file__).resolve().parents[3] / "clients" / "python"

if str(CLIENT_DIR) not in sys.path:
    sys.path.insert(0, str(CLIENT_DIR))
