"""Where a client keeps the last seq it delivered per stream, so an app restart resumes too.

A store is anything with ``load()`` and ``save(stream, seq, epoch=None)`` (``SeqStore``);
``epoch`` is the stream log's incarnation when the server gives one, kept as
``{"epoch": ..., "seq": ...}`` (a bare seq otherwise, as before), so a restarted app can tell a
recreated log. The client calls ``save(stream, seq)`` without it when there is none, so a
store written for the two-argument form keeps working. Two are given:
``MemoryStore`` (the default: a restart starts over) and ``FileStore`` (one JSON file, replaced
atomically so a crash mid-write leaves the previous version, never half a file).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

# A stored cursor: the bare seq, or {"epoch": str, "seq": int}.
Cursor = int | dict[str, Any]


class SeqStore(Protocol):
    """The last seq delivered to the app, per stream (``room:<name>``, ``user:<id>``, ``all``)."""

    def load(self) -> Mapping[str, Cursor]: ...

    def save(self, stream: str, seq: int, epoch: str | None = None) -> None: ...


def cursor_value(seq: int, epoch: str | None) -> Cursor:
    return {"epoch": epoch, "seq": seq} if epoch is not None else seq


class MemoryStore:
    """Kept in this process only."""

    def __init__(self, initial: Mapping[str, Cursor] | None = None) -> None:
        self._seqs: dict[str, Cursor] = dict(initial or {})

    def load(self) -> dict[str, Cursor]:
        return dict(self._seqs)

    def save(self, stream: str, seq: int, epoch: str | None = None) -> None:
        self._seqs[stream] = cursor_value(seq, epoch)


class FileStore:
    """A JSON object ``{stream: seq}`` in ``path``. Every ``save`` rewrites the file (it holds
    one number per stream, so it stays small); a missing or unreadable file loads as empty."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = Path(path)
        self._seqs = self._read()

    def _read(self) -> dict[str, Cursor]:
        try:
            data = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict):
            return {}
        out: dict[str, Cursor] = {}
        for k, v in data.items():
            if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
                out[str(k)] = v
            elif (
                isinstance(v, dict)
                and isinstance(v.get("epoch"), str)
                and isinstance(v.get("seq"), int)
                and not isinstance(v.get("seq"), bool)
                and v["seq"] >= 0
            ):
                out[str(k)] = {"epoch": v["epoch"], "seq": v["seq"]}
        return out

    def load(self) -> dict[str, Cursor]:
        return dict(self._seqs)

    def save(self, stream: str, seq: int, epoch: str | None = None) -> None:
        self._seqs[stream] = cursor_value(seq, epoch)
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
