"""Structured logs: one JSON line per handled event. Never log tokens or message texts."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger("switchboard")


def configure(level: str) -> None:
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(getattr(logging, level, logging.INFO))


def emit(level: int = logging.INFO, **fields: Any) -> None:
    logger.log(level, json.dumps(fields, default=str, separators=(",", ":")))


@contextmanager
def event_log(**fields: Any) -> Iterator[dict[str, Any]]:
    """Log one line when the block ends, with its duration; the block adds fields to the dict."""
    record: dict[str, Any] = dict(fields)
    started = time.perf_counter()
    try:
        yield record
    except Exception as exc:
        record["outcome"] = "exception"
        record["error"] = type(exc).__name__
        raise
    finally:
        record.setdefault("outcome", "ok")
        record["durationMs"] = round((time.perf_counter() - started) * 1000, 2)
        emit(logging.ERROR if record["outcome"] == "exception" else logging.INFO, **record)
