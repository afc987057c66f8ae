"""Fuzz the HTTP API with schemathesis, from its OpenAPI document, against the local REST server
(Chalice's own local server, which the local gateway starts) with auth on and an admin token.

Every operation gets valid and invalid inputs (schemathesis' positive and negative modes); every
answer must be no 5xx, documented (status, content type, body schema), and, when it is an
error, a JSON object with an ``error`` string. It is a throwaway stack: POSTs send and DELETE
kicks for real.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import APIOperation, Case, CheckContext, GenerationMode, Response
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

import app as app_module
from tests.e2e.helpers import REPO_ROOT
from tests.gateways import GatewayFactory, rest_url
from tests.helpers import JWT_ENV, token

pytestmark = pytest.mark.timeout(300)  # 19 operations x 25 examples on a loaded 2-core machine


def errors_are_json_with_an_error_string(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """Every 4xx/5xx answer is ``{"error": "..."}``, whoever produced it."""
    if response.status_code < 400:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), (
        f"{response.status_code} answered with {content_type!r}: {response.text[:200]!r}"
    )
    try:
        body = json.loads(response.text)
    except ValueError:
        msg = f"{response.status_code} body is not JSON: {response.text[:200]!r}"
        raise AssertionError(msg) from None
    assert isinstance(body, dict) and isinstance(body.get("error"), str), (
        f"{response.status_code} body has no error string: {body!r}"
    )
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    errors_are_json_with_an_error_string,
]


# Loaded once, statically: the base URL is the gateway's, given per call. (schemathesis'
# ``pytest.from_fixture`` would start one gateway for all operations too, but it sets
# ``Function._nodeid``, which pytest 9 no longer has.)
SCHEMA = schemathesis.openapi.from_path(str(app_module.OPENAPI_PATH))
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


def fuzz(operation: APIOperation, mode: GenerationMode, base_url: str, auth: str) -> None:
    """Up to 25 generated requests to one operation; raises the (shrunk) first failure."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=25,
        deadline=None,
        derandomize=True,  # the same requests every run: a failure is reproducible
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        case.call_and_validate(base_url=base_url, headers={"Authorization": auth}, checks=CHECKS)

    run()


def test_every_operation_answers_as_documented(gateway_factory: GatewayFactory) -> None:
    gw = gateway_factory(REPO_ROOT, auth_mode="jwt", env=JWT_ENV)
    auth = f"Bearer {token('ops', role='admin')}"
    assert len(OPERATIONS) == 19  # with DELETE /rooms/{room}/members/{user_id} and /me/devices
    failures: list[str] = []
    for operation in OPERATIONS:
        # Negative mode needs something to make invalid: a parameter or a body.
        fuzzable = operation.path_parameters or operation.query or operation.body
        for mode in MODES if fuzzable else MODES[:1]:
            try:
                fuzz(operation, mode, rest_url(gw), auth)
            except Exception as exc:  # noqa: BLE001 - every operation runs; all failures shown
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    assert not failures, "\n\n".join(failures)
