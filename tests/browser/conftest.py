"""Fixtures for the browser tests: headless Debian Chromium driven by selenium, the local gateway.

Chromium and ChromeDriver come from Debian (``tests/browser/install-chromium.sh``, run by
``make test``). Without them the browser tests are skipped, except under CI (``CI`` set), where
a missing browser is a failure rather than a silent skip. Screenshots go to test-output/browser/.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from local_gateway import LocalGateway
from tests.gateways import GatewayFactory

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = REPO_ROOT / "test-output" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--lang=en-US",
)


def _require_chromium() -> None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if not missing:
        return
    message = f"{', '.join(missing)} missing: run tests/browser/install-chromium.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


SwitchboardGateway = Callable[..., LocalGateway]


@pytest.fixture
def switchboard_gateway(gateway_factory: GatewayFactory) -> SwitchboardGateway:
    """``switchboard_gateway(**LocalGateway options)`` -> the switchboard app behind a started
    local gateway on ephemeral ports (WebSocket + @connections, REST with the page, DynamoDB),
    ``AUTH_MODE=none`` unless given; stopped at teardown by ``gateway_factory``.
    """
    return lambda **options: gateway_factory(REPO_ROOT, **{"auth_mode": "none", **options})


BrowserFactory = Callable[..., Any]


@pytest.fixture
def browser(
    request: pytest.FixtureRequest, gateway_factory: GatewayFactory
) -> Iterator[BrowserFactory]:
    """``browser(name)`` -> a new headless Chromium session with its own fresh profile.

    Every session is screenshotted to test-output/browser/<test>-<name>-final.png at teardown
    (the last state is what you want to see when a test fails), then closed. It depends on
    ``gateway_factory`` so that browsers close before the gateways they talk to stop.
    """
    _require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    sessions: list[tuple[str, Any, str]] = []

    def start(name: str, width: int = 1200, height: int = 900) -> Any:
        profile = tempfile.mkdtemp(prefix="switchboard-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.add_argument(f"--window-size={width},{height}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        driver.set_page_load_timeout(15)
        driver.set_script_timeout(10)
        sessions.append((name, driver, profile))
        return driver

    yield start
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    for name, driver, profile in sessions:
        try:
            driver.save_screenshot(str(OUTPUT_DIR / f"{request.node.name}-{name}-final.png"))
        except Exception:  # noqa: BLE001 - a dead session must not hide the test's own failure
            pass
        finally:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
