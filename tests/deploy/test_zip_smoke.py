"""The packaged deployment.zip runs: the chat flow on the local gateway, handlers from the zip."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from chalicelib import web
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


@pytest.mark.e2e
def test_the_zip_holds_the_js_client_modules_as_files_with_the_client_source(
    packaged: Packager,
) -> None:
    # chalicelib/static/client/*.js link to clients/js/src: the zip must hold their contents
    # (not links, which would dangle in /var/task), byte for byte.
    source = Path(__file__).resolve().parents[2] / "clients" / "js" / "src"
    with zipfile.ZipFile(packaged("dev").zip_path) as zf:
        for name in web.CLIENT_MODULES:
            info = zf.getinfo(f"chalicelib/static/client/{name}")
            assert (info.external_attr >> 16) & 0o170000 != 0o120000, f"{name} is a link"
            assert zf.read(info) == (source / name).read_bytes(), name


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
