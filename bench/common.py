"""Shared helpers: the machine, child processes speaking JSON lines, timing and statistics."""

from __future__ import annotations

import json
import os
import platform
import queue
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

PROJECT_DIR = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_DIR / "bench" / "results"
REGION = "us-east-1"
DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    memory_gib = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
    }


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-files limit towards ``wanted`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(max(soft, wanted), hard if hard != resource.RLIM_INFINITY else wanted)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def median(values: Iterable[float]) -> float:
    items = list(values)
    return statistics.median(items) if items else float("nan")


def emit(obj: dict[str, Any], out: TextIO | None = None) -> None:
    """Child side: one JSON line on stdout (the protocol channel)."""
    stream = out or sys.stdout
    stream.write(json.dumps(obj) + "\n")
    stream.flush()


class ChildError(RuntimeError):
    pass


class Child:
    """A ``python -m <module>`` child: JSON lines in on stdin, JSON lines out on stdout.

    stderr goes to ``log_path`` (or is discarded). ``request`` sends one command and waits
    for the next line, bounded by ``timeout``.
    """

    def __init__(
        self,
        module: str,
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.module = module
        child_env = dict(os.environ)
        child_env.update(env or {})
        child_env["PYTHONPATH"] = str(PROJECT_DIR) + os.pathsep + child_env.get("PYTHONPATH", "")
        self._log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *(args or [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            cwd=str(PROJECT_DIR),
            env=child_env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, **message: Any) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise ChildError(f"{self.module} is gone (exit {self.proc.poll()})") from exc

    def recv(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.module}: no answer within {timeout:.0f}s")
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise ChildError(f"{self.module} exited (code {self.proc.wait(5)})")
            line = line.strip()
            if not line.startswith("{"):
                continue  # stray output from a library; the protocol is JSON objects only
            message: dict[str, Any] = json.loads(line)
            if "error" in message:
                raise ChildError(f"{self.module}: {message['error']}")
            return message

    def request(self, wait: float = 60.0, **message: Any) -> dict[str, Any]:
        """Send one command; its answer, waited for at most ``wait`` seconds."""
        self.send(**message)
        return self.recv(wait)

    def close(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            try:
                self.send(cmd="quit")
                self.proc.stdin.close()  # type: ignore[union-attr]
            except (ChildError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
        if self._log is not subprocess.DEVNULL:
            self._log.close()  # type: ignore[union-attr]

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def command_loop(handle: Any) -> None:
    """Child side: read JSON commands from stdin until ``quit`` or EOF; answer each one."""
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        message = json.loads(line)
        if message.get("cmd") == "quit":
            return
        try:
            answer = handle(message)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails the run
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        if answer is not None:
            emit(answer)
