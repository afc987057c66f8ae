"""``make package``: the stage's CloudFormation (SAM) template and deployment.zip, offline.

    python -m deploy.package --stage dev [--out build/package/dev]

Writes the merge template (``deploy/template.py``), runs ``chalice package --merge-template``
into ``--out`` (``sam.json`` + ``deployment.zip``), then checks the zip: it must hold only
pure-Python files (Chalice builds it for the local Python while the template pins another
runtime, so a compiled dependency would break at import) and stay under ``MAX_ZIP_BYTES``.

Nothing here talks to AWS: Chalice only needs a region name to package (set to a dummy when
none is configured), no credentials. Dependencies come from pip's cache or the package index.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from deploy import template
from deploy.project import PROJECT_DIR, stages

MAX_ZIP_BYTES = 1_000_000
BUILD_DIR = PROJECT_DIR / "build"
COMPILED_SUFFIXES = (".so", ".pyd", ".dylib")


class PackageError(RuntimeError):
    pass


@dataclass(frozen=True)
class Package:
    out_dir: Path
    template_path: Path
    zip_path: Path
    merge_template_path: Path

    @property
    def zip_bytes(self) -> int:
        return self.zip_path.stat().st_size

    def zip_names(self) -> list[str]:
        with zipfile.ZipFile(self.zip_path) as zf:
            return zf.namelist()


def chalice_command() -> list[str]:
    script = Path(sys.executable).with_name("chalice")
    if script.exists():
        return [str(script)]
    found = shutil.which("chalice")
    if not found:
        raise PackageError("chalice is not installed (pip install -r requirements-dev.txt)")
    return [found]


def packaging_env() -> dict[str, str]:
    env = dict(os.environ)
    # Chalice builds a boto3 session to package and needs a region name; it makes no calls.
    if not (env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")):
        env["AWS_DEFAULT_REGION"] = "us-east-1"
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


@contextmanager
def _project_lock() -> Iterator[None]:
    """One ``chalice package`` at a time per checkout: it shares .chalice/deployments/."""
    BUILD_DIR.mkdir(exist_ok=True)
    with open(BUILD_DIR / ".package.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_zip(pkg: Package, max_bytes: int = MAX_ZIP_BYTES) -> None:
    compiled = [n for n in pkg.zip_names() if n.endswith(COMPILED_SUFFIXES)]
    if compiled:
        raise PackageError(
            f"deployment.zip holds compiled files built for the local Python, not for "
            f"{template.RUNTIME}: {', '.join(compiled[:5])}"
        )
    if pkg.zip_bytes > max_bytes:
        raise PackageError(f"deployment.zip is {pkg.zip_bytes} bytes, over {max_bytes}")


def package(stage: str, out_dir: Path | None = None, quiet: bool = False) -> Package:
    out = Path(out_dir) if out_dir else BUILD_DIR / "package" / stage
    out = out.resolve()
    with tempfile.TemporaryDirectory(prefix="switchboard-merge-") as tmp:
        merge = template.write(stage, Path(tmp) / f"merge-template-{stage}.json")
        if out.exists():
            shutil.rmtree(out)
        cmd = [
            *chalice_command(),
            "--project-dir",
            str(PROJECT_DIR),
            "package",
            "--stage",
            stage,
            "--pkg-format",
            "cloudformation",
            "--merge-template",
            str(merge),
            str(out),
        ]
        with _project_lock():
            result = subprocess.run(
                cmd, env=packaging_env(), capture_output=True, text=True, check=False
            )
        if result.returncode != 0:
            raise PackageError(
                f"chalice package failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        if not quiet and result.stdout.strip():
            print(result.stdout.strip())
        kept = out / merge.name
        shutil.copyfile(merge, kept)
    pkg = Package(out, out / "sam.json", out / "deployment.zip", kept)
    added = add_bytecode(pkg.zip_path)
    if not quiet:
        print(
            f"bytecode        {added} .pyc files for {template.RUNTIME}"
            if added
            else f"bytecode        none: no python{runtime_version()} here to compile with "
            "(LAMBDA_RUNTIME_PYTHON names one)"
        )
    check_zip(pkg)
    return pkg


def runtime_version() -> str:
    """The Lambda runtime's Python version, e.g. "3.13" (``template.RUNTIME``)."""
    return template.RUNTIME.removeprefix("python")


def runtime_python() -> str | None:
    """An interpreter of the runtime's Python version on this machine (``LAMBDA_RUNTIME_PYTHON``
    names one, else ``python3.X`` on PATH), or None."""
    version = runtime_version()
    found = os.environ.get("LAMBDA_RUNTIME_PYTHON") or shutil.which(f"python{version}")
    if not found:
        return None
    probe = subprocess.run(
        [found, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found if probe.returncode == 0 and probe.stdout.strip() == version else None


def add_bytecode(zip_path: Path) -> int:
    """Add the bytecode of every module in the zip, compiled by the runtime's Python version,
    as ``__pycache__/*.cpython-3XX.pyc`` beside its source; how many files were added.

    Lambda's /var/task is read-only: without them every cold start compiles app.py,
    chalicelib and the dependencies again (~70 ms here, more than half of ``import app``'s
    own time; bench/coldstart.py). They are ``unchecked-hash`` pycs (PEP 552): a zip keeps
    mtimes only to 2 s, so timestamp-checked ones could be judged stale and ignored. Without
    an interpreter of that version here nothing is added (the zip works as before)."""
    python = runtime_python()
    if python is None:
        return 0
    with tempfile.TemporaryDirectory(prefix="switchboard-pyc-") as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(zip_path) as zf:
            sources = [n for n in zf.namelist() if n.endswith(".py")]
            zf.extractall(root, members=sources)
        result = subprocess.run(
            [python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise PackageError(
                f"compiling the zip's modules failed:\n{result.stdout}{result.stderr}"
            )
        compiled = sorted(root.rglob("__pycache__/*.pyc"))
        with zipfile.ZipFile(zip_path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in compiled:
                zf.write(path, path.relative_to(root).as_posix())
    return len(compiled)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Package one stage for CloudFormation.")
    parser.add_argument("--stage", default="dev", choices=stages())
    parser.add_argument("--out", help="output folder (default: build/package/<stage>)")
    args = parser.parse_args(argv)
    try:
        pkg = package(args.stage, Path(args.out) if args.out else None)
    except PackageError as exc:
        print(exc, file=sys.stderr)
        return 1
    rel = os.path.relpath(pkg.out_dir)
    print(f"template        {os.path.join(rel, pkg.template_path.name)}")
    print(f"deployment.zip  {pkg.zip_bytes:,} bytes, {len(pkg.zip_names())} files")
    print(f"merge template  {os.path.join(rel, pkg.merge_template_path.name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
