"""deploy/package.py ships bytecode compiled by the Lambda runtime's Python version, when this
machine has that version: /var/task is read-only, so modules without it compile on every cold
start (bench/coldstart.py measures the difference)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from deploy import package, template

HERE = f"python{sys.version_info[0]}.{sys.version_info[1]}"
TAG = f"cpython-{sys.version_info[0]}{sys.version_info[1]}"


def _zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("app.py", "X = 1\n")
        zf.writestr("chalicelib/__init__.py", "")
        zf.writestr("chalicelib/static/index.html", "<html></html>")
    return path


def test_each_module_gets_unchecked_bytecode_for_the_runtime_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(template, "RUNTIME", HERE)  # this interpreter plays the runtime
    monkeypatch.setenv("LAMBDA_RUNTIME_PYTHON", sys.executable)
    zip_path = _zip(tmp_path / "deployment.zip")
    assert package.add_bytecode(zip_path) == 2
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        pyc = zf.read(f"__pycache__/app.{TAG}.pyc")
    assert f"chalicelib/__pycache__/__init__.{TAG}.pyc" in names
    assert "chalicelib/static/index.html" in names and "app.py" in names
    # PEP 552 flags: bit 0 hash-based, bit 1 check_source; unchecked-hash = 0b01.
    assert int.from_bytes(pyc[4:8], "little") == 0b01


def test_without_the_runtime_version_nothing_is_added(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(template, "RUNTIME", "python3.0")
    monkeypatch.delenv("LAMBDA_RUNTIME_PYTHON", raising=False)
    zip_path = _zip(tmp_path / "deployment.zip")
    assert package.add_bytecode(zip_path) == 0
    with zipfile.ZipFile(zip_path) as zf:
        assert not [n for n in zf.namelist() if n.endswith(".pyc")]
