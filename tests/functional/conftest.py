"""The functional tier's harness fixtures: the Chalice app over moto and a fake gateway.

``harness`` runs at the defaults of ``make_switchboard``; ``jwt_harness`` with AUTH_MODE=jwt.
A test that needs other settings builds its own with ``tests.harness.harness_over``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from tests.conftest import make_switchboard
from tests.harness import Harness, harness_over
from tests.helpers import FakeGateway


@pytest.fixture
def harness(switchboard: Switchboard, gateway: FakeGateway) -> Iterator[Harness]:
    with harness_over(switchboard, gateway) as driven:
        yield driven


@pytest.fixture
def jwt_harness(registry: Registry, gateway: FakeGateway) -> Iterator[Harness]:
    with harness_over(make_switchboard(registry, gateway, auth_mode="jwt"), gateway) as driven:
        yield driven
