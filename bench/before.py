"""Run a benchmark on another commit's app in the same run: the before column of a before/after.

``at(ref, module, args)`` makes a temporary git worktree of ``ref``, lays this tree's
``bench/`` and ``local_gateway/`` over it (the measuring tools are this tree's; the app,
``app.py`` and ``chalicelib/``, is the commit's), runs ``python -m <module> <args>`` there as a
child process and returns what it wrote to the JSON file named by ``{json}`` in ``args``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.common import PROJECT_DIR

TOOLS = ("bench", "local_gateway")


def short_commit(tree: Path = PROJECT_DIR, ref: str = "HEAD") -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=tree, capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or "?"


def at(ref: str, module: str, args: Sequence[str], timeout: float = 1800) -> dict[str, Any]:
    """``python -m module args`` on commit ``ref``'s app; ``{json}`` in ``args`` is replaced
    by the path of the JSON file the child writes, whose content is returned (with
    ``commit``)."""
    scratch = Path(tempfile.mkdtemp(prefix="switchboard-before-"))
    tree = scratch / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(tree), ref],
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
    )
    try:
        for name in TOOLS:
            shutil.rmtree(tree / name, ignore_errors=True)
            shutil.copytree(
                PROJECT_DIR / name,
                tree / name,
                ignore=shutil.ignore_patterns("results", "__pycache__"),
            )
        out = scratch / "result.json"
        argv = [str(out) if a == "{json}" else a for a in args]
        subprocess.run(
            [sys.executable, "-m", module, *argv],
            cwd=tree,
            env=dict(os.environ, PYTHONPATH=str(tree)),
            check=True,
            timeout=timeout,
        )
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        result["commit"] = short_commit(tree)
        return result
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(tree)],
            cwd=PROJECT_DIR,
            check=False,
            capture_output=True,
        )
        shutil.rmtree(scratch, ignore_errors=True)
