"""The local gateway's Lambda Invoke API: what botocore's Lambda client sees, as on AWS."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from local_gateway.lambda_invoke import LocalFunction, LocalFunctions, app_functions
from local_gateway.lambda_runtime import ChaliceProject, Invocation, import_app
from local_gateway.sigv4 import Credentials

# It serves Invoke on a real port: the socket tier (make e2e), not make check's in-process one.
pytestmark = pytest.mark.socket

REGION = "us-east-1"
CREDENTIALS = Credentials.generate()
TIMEOUT = 0.3  # the slow function's configured timeout


def echo(event: Any, context: Any) -> Any:
    return {"got": event, "function": context.function_name}


def fail(event: Any, context: Any) -> Any:
    raise ValueError("no such room")


@pytest.fixture
def served() -> Iterator[tuple[LocalFunctions, list[Invocation]]]:
    released = threading.Event()

    def slow(event: Any, context: Any) -> Any:
        released.wait(10)
        return {"late": True}

    records: list[Invocation] = []
    functions = LocalFunctions("127.0.0.1", REGION, CREDENTIALS, records.append)
    functions.bind()
    functions.start(
        [
            LocalFunction("echo", "app-dev-echo", echo, 5.0, 128),
            LocalFunction("fail", "app-dev-fail", fail, 5.0, 128),
            LocalFunction("slow", "app-dev-slow", slow, TIMEOUT, 128),
        ]
    )
    yield functions, records
    released.set()
    functions.stop()


def client(url: str, credentials: Credentials = CREDENTIALS) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=url,
        region_name=REGION,
        config=Config(retries={"total_max_attempts": 1}),
        **credentials.boto3_kwargs(),
    )


def test_invoke_returns_the_functions_answer(
    served: tuple[LocalFunctions, list[Invocation]],
) -> None:
    functions, records = served
    assert functions.url
    answer = client(functions.url).invoke(FunctionName="app-dev-echo", Payload=b'{"a": 1}')
    assert answer["StatusCode"] == 200
    assert "FunctionError" not in answer
    assert answer["ExecutedVersion"] == "$LATEST"
    assert json.loads(answer["Payload"].read()) == {"got": {"a": 1}, "function": "app-dev-echo"}
    assert records[-1].route_key == "lambda:echo" and records[-1].result["got"] == {"a": 1}


@pytest.mark.parametrize(
    "name",
    [
        "echo",
        "app-dev-echo",
        "arn:aws:lambda:us-east-1:123456789012:function:app-dev-echo",
        "arn:aws:lambda:us-east-1:123456789012:function:app-dev-echo:$LATEST",
        "123456789012:function:app-dev-echo",
    ],
)
def test_a_function_is_found_by_name_or_arn(
    served: tuple[LocalFunctions, list[Invocation]], name: str
) -> None:
    functions, _ = served
    assert functions.url
    answer = client(functions.url).invoke(FunctionName=name, Payload=b"{}")
    assert json.loads(answer["Payload"].read())["got"] == {}


def test_a_raising_function_is_an_unhandled_function_error(
    served: tuple[LocalFunctions, list[Invocation]],
) -> None:
    functions, records = served
    assert functions.url
    answer = client(functions.url).invoke(FunctionName="fail", Payload=b"{}")
    assert answer["StatusCode"] == 200 and answer["FunctionError"] == "Unhandled"
    assert json.loads(answer["Payload"].read()) == {
        "errorMessage": "no such room",
        "errorType": "ValueError",
    }
    assert records[-1].error and "ValueError" in records[-1].error


def test_a_function_past_its_timeout_is_a_timed_out_function_error(
    served: tuple[LocalFunctions, list[Invocation]],
) -> None:
    functions, records = served
    assert functions.url
    answer = client(functions.url).invoke(FunctionName="slow", Payload=b"{}")
    assert answer["FunctionError"] == "Unhandled"
    payload = json.loads(answer["Payload"].read())
    assert payload["errorType"] == "Sandbox.Timedout"
    assert f"Task timed out after {TIMEOUT:.2f} seconds" in payload["errorMessage"]
    assert records[-1].timed_out
    assert TIMEOUT * 1000 <= records[-1].duration_ms < TIMEOUT * 1000 + 2000


def test_an_unknown_function_is_resource_not_found(
    served: tuple[LocalFunctions, list[Invocation]],
) -> None:
    functions, _ = served
    assert functions.url
    lam = client(functions.url)
    with pytest.raises(lam.exceptions.ResourceNotFoundException, match="Function not found"):
        lam.invoke(FunctionName="nope", Payload=b"{}")


def test_requests_not_signed_with_the_runs_credentials_are_refused(
    served: tuple[LocalFunctions, list[Invocation]],
) -> None:
    functions, records = served
    assert functions.url
    stranger = client(functions.url, Credentials.generate())
    with pytest.raises(stranger.exceptions.ClientError) as info:
        stranger.invoke(FunctionName="echo", Payload=b"{}")
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert records == []


def test_event_and_dry_run_invocations(served: tuple[LocalFunctions, list[Invocation]]) -> None:
    functions, records = served
    assert functions.url
    lam = client(functions.url)
    assert lam.invoke(FunctionName="echo", InvocationType="DryRun")["StatusCode"] == 204
    assert (
        lam.invoke(FunctionName="echo", InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    )


def test_the_apps_functions_get_their_configured_timeout() -> None:
    project = ChaliceProject.load(".")
    _, app = import_app(".")
    found = {f.name: f for f in app_functions(app, project)}
    support = found["authorize_support"]
    assert support.deployed_name == "switchboard-dev-authorize_support"
    # config.json's lambda_functions.authorize_support, not the 60 s default.
    assert support.timeout_seconds == 3
    assert support.handler({"userId": "u", "room": "support:u"}, None)["allow"] is True
