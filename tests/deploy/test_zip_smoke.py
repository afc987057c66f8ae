"""The packaged deployment.zip runs: the chat flow on the local gateway, handlers from the zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from deploy.package import Package, PackageError, check_zip
from deploy.smoke import FROM_ZIP, run
from tests.deploy.conftest import Packager


@pytest.mark.e2e
def test_packaged_zip_runs_the_chat_flow(packaged: Packager) -> None:
    report = run(packaged("dev").zip_path)
    assert report["ok"] is True
    assert report["delivered"] == "hi from the zip"
    assert report["ack"] == {"delivered": 1, "failed": 0}
    assert report["registry_items_left"] == 0
    assert report["logged_messages"] == 1
    assert set(report["modules_from_zip"]) == set(FROM_ZIP)


def test_a_compiled_dependency_is_refused(tmp_path: Path) -> None:
    zip_path = tmp_path / "deployment.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("app.py", "")
        zf.writestr("fast/_speedups.cpython-311-x86_64-linux-gnu.so", b"\0")
    pkg = Package(tmp_path, tmp_path / "sam.json", zip_path, tmp_path / "merge.json")
    with pytest.raises(PackageError, match="compiled"):
        check_zip(pkg)


def test_an_oversized_zip_is_refused(tmp_path: Path) -> None:
    zip_path = tmp_path / "deployment.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr("app.py", "x" * 5000)
    pkg = Package(tmp_path, tmp_path / "sam.json", zip_path, tmp_path / "merge.json")
    with pytest.raises(PackageError, match="over 100"):
        check_zip(pkg, max_bytes=100)
