"""Fixtures for the reliability tests: the switchboard app on a real LocalGateway, counted.

Scale: ``RELIABILITY_SCALE=small`` (the default, part of ``make test``) or ``soak``
(``make soak``); see ``scale.SCALES``. Tests marked ``soak`` run only at soak scale.
Every test records its figures (``figures.record(...)``); they are printed as a table at the
end of the run and written to ``test-output/reliability/figures-<scale>.json``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local_gateway import EmbeddedDynamoDB, LocalGateway
from tests.gateways import started_gateways
from tests.reliability.applog import AppLog, CountingInvocationLog
from tests.reliability.ddb_faults import ThrottlingProxy
from tests.reliability.scale import SCALE
from tests.reliability.stack import REPO_ROOT, TABLE, StackUnderTest

RELIABILITY_DIR = Path(__file__).resolve().parent
OUTPUT_DIR = REPO_ROOT / "test-output" / "reliability"
COLUMNS = (
    ("scenario", "scenario"),
    ("clients", "clients"),
    ("messages", "messages"),
    ("faults", "faults injected"),
    ("leaked", "items leaked"),
    ("lost", "messages lost"),
    ("seconds", "s"),
)

_FIGURES: list[dict[str, Any]] = []

# The scenarios here send frames and open connections as fast as they can, by design; the abuse
# limits (test_abuse.py runs with the stage's own) would refuse some of them.
GENEROUS_LIMITS = {
    "MAX_CONNECTIONS_PER_USER": "100000",
    "MAX_ROOMS_PER_USER": "100000",
    "MESSAGE_RATE": "100000",
    "MESSAGE_BURST": "100000",
    "LEAVE_FRAME_COST": "1",
    "REPLAY_MAX_STREAMS": "100",
    "REPLAY_MAX_MESSAGES": "10000",
    "REPLAY_MAX_BYTES": "16777216",
    "REPLAY_RATE": "100000",
    "REPLAY_BURST": "1000000",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_soak = pytest.mark.skip(reason="soak scale only: make soak (RELIABILITY_SCALE=soak)")
    for item in items:
        if RELIABILITY_DIR not in Path(str(item.path)).resolve().parents:
            continue
        item.add_marker(pytest.mark.e2e)
        if SCALE.name != "soak" and item.get_closest_marker("soak"):
            item.add_marker(skip_soak)


class Figures:
    """What one test measured; shown in the run's summary table."""

    def __init__(self, test: str) -> None:
        self.test = test
        self.started = time.perf_counter()

    def record(self, scenario: str, **values: Any) -> dict[str, Any]:
        row = {"scenario": scenario, "scale": SCALE.name, "test": self.test, **values}
        row.setdefault("seconds", round(time.perf_counter() - self.started, 1))
        _FIGURES.append(row)
        print("FIGURES " + json.dumps(row, default=str))
        return row


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Figures:
    return Figures(request.node.nodeid.split("::", 1)[-1])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    write = terminalreporter.write_line
    terminalreporter.section(f"reliability figures (scale: {SCALE.name})")
    rows = [[str(row.get(key, "")) for key, _ in COLUMNS] for row in _FIGURES]
    headers = [title for _, title in COLUMNS]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    for row in rows:
        write("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"figures-{SCALE.name}.json"
    path.write_text(json.dumps(_FIGURES, indent=2, default=str) + "\n", encoding="utf-8")
    write(f"(details of every row: {path.relative_to(REPO_ROOT)})")


StackFactory = Callable[..., StackUnderTest]


@pytest.fixture
def switchboard_factory() -> Iterator[StackFactory]:
    """``switchboard_factory(**LocalGateway options)`` -> the switchboard app on a started
    gateway (ephemeral ports, ``AUTH_MODE=none`` unless given, no REST server unless
    ``rest_port=0``), with a counting invocation log and the app's log captured.

    ``dynamodb_scan_url`` names the DynamoDB the test scans when the app's endpoint is a
    fault proxy. Function-scoped: the root conftest resets AWS_* variables around every test.
    """
    logger = logging.getLogger("switchboard")
    saved = (list(logger.handlers), logger.propagate, logger.level)

    try:
        with started_gateways() as start_gateway:

            def start(dynamodb_scan_url: str | None = None, **options: Any) -> StackUnderTest:
                env = {
                    "CONNECTIONS_TABLE": TABLE,
                    "LOG_LEVEL": "INFO",
                    **GENEROUS_LIMITS,
                    **options.pop("env", {}),
                }
                options.setdefault("rest_port", None)
                options.setdefault("auth_mode", "none")
                app_log = AppLog()

                def count(gateway: LocalGateway) -> None:
                    gateway.invocations = CountingInvocationLog()
                    # The app's log goes to our counter only (log.configure adds its own
                    # handler only when the logger has none).
                    logger.handlers = [app_log]
                    logger.propagate = False

                gateway = start_gateway(REPO_ROOT, before_start=count, env=env, **options)
                # Importing app.py gave Chalice's app.log (the same logger) a stdout handler.
                logger.handlers = [app_log]
                assert gateway.urls is not None
                return StackUnderTest(gateway, app_log, dynamodb_scan_url or gateway.urls.dynamodb)

            yield start
    finally:
        logger.handlers, logger.propagate, level = saved
        logger.setLevel(level)


@pytest.fixture
def throttling_switchboard(
    switchboard_factory: StackFactory,
) -> Iterator[Callable[..., tuple[StackUnderTest, ThrottlingProxy]]]:
    """``throttling_switchboard(**options)`` -> (switchboard, proxy): the app's DynamoDB
    endpoint is a ``ThrottlingProxy`` in front of an embedded DynamoDB; the test scans the
    DynamoDB directly."""
    resources: list[tuple[StackUnderTest, ThrottlingProxy, EmbeddedDynamoDB]] = []

    def start(**options: Any) -> tuple[StackUnderTest, ThrottlingProxy]:
        dynamodb = EmbeddedDynamoDB(host="127.0.0.1", port=0)
        direct = dynamodb.start()
        proxy = ThrottlingProxy(direct)
        sb = switchboard_factory(
            dynamodb_endpoint=proxy.start(),
            dynamodb_scan_url=direct,
            credentials=dynamodb.credentials,
            **options,
        )
        resources.append((sb, proxy, dynamodb))
        return sb, proxy

    try:
        yield start
    finally:
        for sb, proxy, dynamodb in reversed(resources):
            proxy.throttle({})
            sb.gateway.stop()  # first: its $disconnect handlers still need DynamoDB
            proxy.stop()
            dynamodb.stop()
