"""Just enough IAM policy evaluation for the deploy tests: Allow statements, ``*``/``?`` globs."""

from __future__ import annotations

import re
from typing import Any


def arn_glob(pattern: str) -> re.Pattern[str]:
    """An IAM resource pattern as a regex: ``*`` is any run of characters (``/`` too)."""
    return re.compile(
        "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
        + r"\Z"
    )


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    for st in statements:
        actions = as_list(st["Action"])
        resources = as_list(st["Resource"])
        if st["Effect"] == "Allow" and any(a.lower() == action.lower() for a in actions):
            if any(arn_glob(r).match(resource) for r in resources):
                return True
    return False
