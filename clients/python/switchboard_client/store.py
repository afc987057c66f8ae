"""Where a client keeps the last seq it delivered per stream, so an app restart resumes too.

A store is anything with ``load()`` and ``save(stream, seq)`` (``SeqStore``). Two are given:
``MemoryStore`` (the default: a restart starts over) and ``FileStore`` (one JSON file, replaced
atomically so a crash mid-write leaves the previous version, never half a file).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Protocol


class SeqStore(Protocol):
    """The last seq delivered to the app, per stream (``room:<name>``, ``user:<id>``, ``all``)."""

    def load(self) -> dict[str, int]: ...

    def save(self, stream: str, seq: int) -> None: ...


class MemoryStore:
    """Kept in this process only."""

    def __init__(self, initial: dict[str, int] | None = None) -> None:
        self._seqs = dict(initial or {})

    def load(self) -> dict[str, int]:
        return dict(self._seqs)

    def save(self, stream: str, seq: int) -> None:
        self._seqs[stream] = seq


class FileStore:
    """A JSON object ``{stream: seq}`` in ``path``. Every ``save`` rewrites the file (it holds
    one number per stream, so it stays small); a missing or unreadable file loads as empty."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._seqs = self._read()

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        return {
            str(k): v
            for k, v in data.items()
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0
        }

    def load(self) -> dict[str, int]:
        return dict(self._seqs)

    def save(self, stream: str, seq: int) -> None:
        self._seqs[stream] = seq
        self._path.parent.mkdir(parents=True, exist_ok=True)
        # Write a sibling temp file, then rename over: os.replace is atomic on POSIX and Windows.
        fd, tmp = tempfile.mkstemp(prefix=self._path.name, suffix=".tmp", dir=self._path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self._seqs, handle, sort_keys=True)
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
