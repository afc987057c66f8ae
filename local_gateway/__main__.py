"""``python -m local_gateway``: see ``local_gateway.cli``."""

from __future__ import annotations

import sys

from local_gateway.cli import main

if __name__ == "__main__":
    sys.exit(main())
