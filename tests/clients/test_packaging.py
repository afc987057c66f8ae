"""The clients as a user installs them, and every documented snippet run against the local stack
(issue 25, item 10): ``npm pack`` and ``pip wheel`` artefacts are built here and installed into a
scratch directory; each client, shell and HTTP snippet of README.md and the clients' READMEs is
extracted and run against a started local gateway, with the scratch installs (so a snippet can
never rot again). A fenced block preceded by ``<!-- snippet: skip (why) -->`` is not run (the
deploy steps need AWS); ``<!-- snippet: interactive ... -->`` marks a shell session whose lines
starting ``> `` are typed into the command on its first line.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from local_gateway import LocalGateway
from tests.gateways import GatewayFactory

REPO_ROOT = Path(__file__).resolve().parents[2]
JS_DIR = REPO_ROOT / "clients" / "js"
PY_DIR = REPO_ROOT / "clients" / "python"
DOCS = [REPO_ROOT / "README.md", JS_DIR / "README.md", PY_DIR / "README.md"]
# The local stack's URLs as the docs spell them (make run's fixed ports) -> the test gateway's.
DOC_WS = "ws://127.0.0.1:8001/api"
DOC_HTTP = "http://127.0.0.1:8000"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@dataclass(frozen=True)
class Snippet:
    doc: Path
    line: int
    lang: str
    code: str
    marker: str  # "", "skip (...)", "interactive (...)"

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(REPO_ROOT)}:{self.line}:{self.lang}"


def snippets() -> list[Snippet]:
    """Every fenced block with a language of sh, js or python, with the marker above it."""
    found: list[Snippet] = []
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            match = re.fullmatch(r"```(\w+)", lines[i].strip())
            if match is None:
                i += 1 if not lines[i].startswith("```") else _skip_block(lines, i)
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            marker = ""
            above = lines[i - 1].strip() if i > 0 else ""
            if above.startswith("<!-- snippet:"):
                marker = above.removeprefix("<!-- snippet:").removesuffix("-->").strip()
            if match.group(1) in ("sh", "js", "python"):
                code = "\n".join(lines[i + 1 : end]) + "\n"
                found.append(Snippet(doc, i + 1, match.group(1), code, marker))
            i = end + 1
    return found


def _skip_block(lines: list[str], start: int) -> int:
    """A fence without a language (a layout listing): step over the whole block."""
    end = next(j for j in range(start + 1, len(lines)) if lines[j].startswith("```"))
    return end + 1 - start


def run(args: list[str], **options: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=180, check=False, **options)  # type: ignore[call-overload]


def interactive(command: str, typed: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a shell session as a person would: type each frame, wait for its answer (a ``< {``
    line; bounded), then the next; then end the input as Ctrl-D does. Every answer must be
    something other than an ``error`` frame."""
    proc = subprocess.Popen(
        ["bash", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")))  # type: ignore[union-attr]
    reader.start()

    def answers() -> list[str]:
        clean = (re.sub(r"\x1b\[?[0-9;]*[A-Za-z]?", "", line) for line in lines)
        return [line.split("< ", 1)[1] for line in clean if "< {" in line]

    for n, frame in enumerate(typed, start=1):
        proc.stdin.write(frame + "\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 20
        while len(answers()) < n:
            assert time.monotonic() < deadline, f"no answer to {frame}: {lines}"
            time.sleep(0.02)
    proc.stdin.close()
    proc.wait(timeout=20)
    reader.join(timeout=5)
    for answer in answers():
        assert json.loads(answer).get("type") != "error", answer
    stderr = proc.stderr.read() if proc.stderr else ""
    return subprocess.CompletedProcess(command, proc.returncode, "".join(lines), stderr)


@pytest.fixture(scope="module")
def installs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``npm pack`` of clients/js installed (with ``ws``) into a scratch npm project, and the
    ``pip wheel`` of clients/python installed into a scratch target directory."""
    out = tmp_path_factory.mktemp("artefacts")
    result: dict[str, Path] = {}
    wheel = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                 "--disable-pip-version-check", "-q", "-w", str(out), str(PY_DIR)])  # fmt: skip
    assert wheel.returncode == 0, wheel.stderr
    result["wheel"] = next(out.glob("switchboard_client-*.whl"))
    site = tmp_path_factory.mktemp("py-site")
    installed = run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q",
                     "--disable-pip-version-check", "--target", str(site), str(result["wheel"])])  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    result["py_site"] = site
    if shutil.which("npm") is None or not (JS_DIR / "node_modules" / "ws").exists():
        return result
    packed = run(["npm", "pack", "--pack-destination", str(out), "--json"], cwd=JS_DIR)
    assert packed.returncode == 0, packed.stderr
    info = json.loads(packed.stdout)[0]
    result["tarball"] = out / info["filename"]
    result["tarball_files"] = Path("\n".join(f["path"] for f in info["files"]))
    project = tmp_path_factory.mktemp("js-app")
    (project / "package.json").write_text(
        json.dumps({"name": "scratch-app", "private": True, "type": "module"})
    )
    npm = run(["npm", "install", "--offline", "--no-audit", "--no-fund", "--no-save",
               str(result["tarball"]), str(JS_DIR / "node_modules" / "ws")], cwd=project)  # fmt: skip
    assert npm.returncode == 0, npm.stderr
    result["js_app"] = project
    return result


def test_the_wheel_installs_with_its_license_and_type_marker(installs: dict[str, Path]) -> None:
    names = zipfile.ZipFile(installs["wheel"]).namelist()
    assert "switchboard_client/py.typed" in names
    assert any(".dist-info/" in n and n.endswith("/LICENSE") for n in names), names
    probe = run(
        [
            sys.executable,
            "-c",
            "import switchboard_client as s; print(s.__file__, s.ErrorCode.TOKEN_EXPIRED)",
        ],
        cwd=installs["py_site"].parent,
        env={"PYTHONPATH": str(installs["py_site"]), "PATH": "/usr/bin:/bin"},
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith(str(installs["py_site"])) and "token_expired" in probe.stdout


def test_the_npm_package_installs_imports_and_says_what_node_20_needs(
    installs: dict[str, Path],
) -> None:
    if "js_app" not in installs:
        pytest.skip("npm and clients/js/node_modules (npm ci) are needed")
    files = str(installs["tarball_files"]).splitlines()
    assert {"package.json", "README.md", "LICENSE", "src/index.js", "src/index.d.ts"} <= set(files)
    assert not any(f.startswith(("test/", "testing/")) for f in files)
    script = """
import { SwitchboardClient, ErrorCode, ConnectError } from "@switchboard/client";
import { FileStore } from "@switchboard/client/file-store";
let message = "";
try { new SwitchboardClient({ url: "ws://127.0.0.1:1/api", WebSocket: globalThis.WebSocket }); }
catch (err) { message = err.message; }
console.log(JSON.stringify({ code: ErrorCode.TOKEN_EXPIRED, file: typeof FileStore,
  connect: typeof ConnectError, message, global: typeof globalThis.WebSocket }));
"""
    (installs["js_app"] / "probe.mjs").write_text(script)
    probe = run(["node", "probe.mjs"], cwd=installs["js_app"])
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert (seen["code"], seen["file"], seen["connect"]) == (
        "token_expired",
        "function",
        "function",
    )
    if seen["global"] == "undefined":  # Node 20: no global WebSocket, a clear message
        assert "npm install ws" in seen["message"]


@pytest.fixture
def stack(gateway_factory: GatewayFactory) -> LocalGateway:
    """A gateway per snippet (the suite's per-test fixtures reset the process's AWS settings,
    which a module-wide in-process gateway would not survive)."""
    return gateway_factory(REPO_ROOT, auth_mode="none")


DOC_SNIPPETS = snippets()


def test_the_docs_have_runnable_snippets_in_every_language() -> None:
    runnable = {s.lang for s in DOC_SNIPPETS if not s.marker.startswith("skip")}
    assert runnable == {"sh", "js", "python"}
    for snippet in DOC_SNIPPETS:
        if snippet.lang == "python":
            assert not re.search(r"^await ", snippet.code, re.M), f"top-level await: {snippet.id}"


@pytest.mark.parametrize("snippet", DOC_SNIPPETS, ids=lambda s: s.id)
def test_doc_snippet_runs_against_the_local_stack(
    snippet: Snippet, installs: dict[str, Path], stack: LocalGateway, tmp_path: Path
) -> None:
    if snippet.marker.startswith("skip"):
        pytest.skip(snippet.marker)
    assert stack.urls is not None and stack.urls.rest is not None
    code = snippet.code.replace(DOC_WS, stack.urls.websocket)
    code = code.replace(DOC_HTTP, stack.urls.rest.rstrip("/"))
    if snippet.lang == "js":
        if "js_app" not in installs:
            pytest.skip("npm and clients/js/node_modules (npm ci) are needed")
        path = installs["js_app"] / f"snippet_{snippet.line}.mjs"
        path.write_text(code)
        result = run(["node", path.name], cwd=installs["js_app"])
    elif snippet.lang == "python":
        path = tmp_path / "snippet.py"
        path.write_text(code)
        env = {"PYTHONPATH": str(installs["py_site"]), "PATH": "/usr/bin:/bin"}
        result = run([sys.executable, str(path)], cwd=tmp_path, env=env)
    elif snippet.marker.startswith("interactive"):
        lines = code.splitlines()
        command = lines[0].replace(".venv/bin/python", sys.executable)
        typed = [line[2:] for line in lines[1:] if line.startswith("> ")]
        result = interactive(command, typed)
    else:
        result = run(["bash", "-euc", code], cwd=tmp_path)
    assert result.returncode == 0, f"{snippet.id}\n{code}\n{result.stdout}\n{result.stderr}"
