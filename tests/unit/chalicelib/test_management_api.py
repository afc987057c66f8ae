from __future__ import annotations

import datetime

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib.management_api import ManagementApi, NoEndpoint, Outcome

ENDPOINT = "https://abc123def4.execute-api.us-east-1.amazonaws.com/api"


@pytest.fixture
def gateway() -> ManagementApi:
    return ManagementApi(
        override=None, session=boto3.session.Session(), max_attempts=1, transport="boto3"
    )


@pytest.mark.parametrize(
    ("code", "status", "outcome"),
    [
        ("GoneException", 410, Outcome.GONE),
        ("PayloadTooLargeException", 413, Outcome.TOO_LARGE),
        ("LimitExceededException", 429, Outcome.THROTTLED),
        ("ForbiddenException", 403, Outcome.FORBIDDEN),
        ("InternalServerError", 500, Outcome.FAILED),
    ],
)
def test_post_maps_management_errors_to_outcomes(
    gateway: ManagementApi, code: str, status: int, outcome: Outcome
) -> None:
    client = gateway.client(ENDPOINT)
    with Stubber(client) as stub:
        stub.add_client_error(
            "post_to_connection", service_error_code=code, http_status_code=status
        )
        assert gateway.post("R1kmxc2VNjMCFIA=", b"{}", ENDPOINT) is outcome


def test_post_sends_the_exact_request(gateway: ManagementApi) -> None:
    client = gateway.client(ENDPOINT)
    with Stubber(client) as stub:
        stub.add_response("post_to_connection", {}, {"ConnectionId": "abc=", "Data": b"hello"})
        assert gateway.post("abc=", b"hello", ENDPOINT) is Outcome.DELIVERED
        stub.assert_no_pending_responses()


def test_oversize_post_is_refused_without_a_request(gateway: ManagementApi) -> None:
    with Stubber(gateway.client(ENDPOINT)):
        assert gateway.post("abc=", b"x" * 131073, ENDPOINT) is Outcome.TOO_LARGE


def test_clients_are_built_once_per_endpoint(gateway: ManagementApi) -> None:
    assert gateway.client(ENDPOINT) is gateway.client(ENDPOINT)
    assert gateway.client(ENDPOINT) is not gateway.client("http://127.0.0.1:8001/api")


def test_override_endpoint_wins() -> None:
    gateway = ManagementApi(override="http://127.0.0.1:8001/api")
    assert gateway.endpoint_for(ENDPOINT) == "http://127.0.0.1:8001/api"


def test_no_endpoint_is_a_clear_error_and_a_failed_outcome() -> None:
    gateway = ManagementApi()
    with pytest.raises(NoEndpoint):
        gateway.endpoint_for(None)
    assert gateway.post("abc=", b"x") is Outcome.FAILED
    assert ManagementApi(transport="boto3").post("abc=", b"x") is Outcome.FAILED


def test_client_uses_standard_retries_and_a_sized_pool() -> None:
    gateway = ManagementApi(max_pool_connections=99, max_attempts=4)
    config = gateway.client(ENDPOINT).meta.config
    assert config.max_pool_connections == 99
    assert config.retries == {"mode": "standard", "total_max_attempts": 4}


def test_endpoint_client_reads_connection_details(gateway: ManagementApi) -> None:
    # No production code reads a connection (the functions' roles grant no GET): the client
    # for an endpoint still answers GetConnection, e.g. for an operator's script.
    when = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=datetime.UTC)
    with Stubber(gateway.client(ENDPOINT)) as stub:
        stub.add_response(
            "get_connection",
            {
                "ConnectedAt": when,
                "LastActiveAt": when,
                "Identity": {"SourceIp": "203.0.113.7", "UserAgent": "ua"},
            },
        )
        info = gateway.client(ENDPOINT).get_connection(ConnectionId="abc=")
    assert info["Identity"]["SourceIp"] == "203.0.113.7" and info["ConnectedAt"] == when


def test_unknown_rate_control_is_refused() -> None:
    with pytest.raises(ValueError, match="rate_control"):
        ManagementApi(rate_control="tcp")
