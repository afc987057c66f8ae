"""What the repository itself promises: secret files the docs recommend are never committed,
and `make run` installs only the local stack's requirements."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _requirements(name: str) -> set[str]:
    """Requirement names in a requirements file, following ``-r`` includes."""
    names: set[str] = set()
    for raw in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            names |= _requirements(line[3:].strip())
        elif not line.startswith("-"):
            names.add(line.split("==")[0].split("[")[0].lower())
    return names


# The files README.md and Makefile tell people to keep their JWT secret in.
@pytest.mark.parametrize("path", [".env.local", ".env.prod.local", ".chalice/local.env"])
def test_secret_files_are_git_ignored(path: str) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", path], cwd=ROOT, check=False
    )
    assert result.returncode == 0, f"{path} is not git-ignored: a secret could be committed"


def test_make_run_installs_no_test_tools() -> None:
    run = _requirements("requirements-run.txt")
    assert {"chalice", "boto3", "moto", "websockets", "pyjwt", "h11"} <= run
    # The test toolchain (and moto's [server] extra, which pulls cfn-lint) stays with make test.
    heavy = {"selenium", "schemathesis", "hypothesis", "mypy", "ruff", "cfn-lint", "pytest"}
    assert not run & heavy
    assert "moto[server]" not in (ROOT / "requirements-run.txt").read_text(encoding="utf-8")
    assert run <= _requirements("requirements-dev.txt"), "dev must include the run requirements"


def test_make_run_uses_the_run_requirements_only() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    target = next(line for line in makefile.splitlines() if line.startswith("run:"))
    assert "$(RUN_STAMP)" in target and "$(STAMP)" not in target.replace("$(RUN_STAMP)", "")
