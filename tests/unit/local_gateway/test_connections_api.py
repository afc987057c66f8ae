"""The local gateway's @connections API as request -> response, with no socket opened."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from local_gateway.connections_api import ConnectionsApi, Response
from local_gateway.faults import FaultConfig, FaultInjector
from local_gateway.http11 import HttpRequest
from local_gateway.lambda_events import ClientInfo
from local_gateway.quotas import Quotas

CID = "R1kmxc2VNjMCFIA="
PATH = "/api/@connections/R1kmxc2VNjMCFIA%3D"
SIGNED = [("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/...")]
CONNECTED_AT_MS = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z


@dataclass
class FakeConnection:
    """Records what the API did to the socket."""

    info: ClientInfo = field(
        default_factory=lambda: ClientInfo(
            connection_id=CID,
            connected_at_ms=CONNECTED_AT_MS,
            source_ip="203.0.113.7",
            user_agent="pytest",
        )
    )
    is_open: bool = True
    last_active_ms: int = CONNECTED_AT_MS + 2_000
    buffered: int = 0
    sent: list[bytes] = field(default_factory=list)
    closed: list[tuple[int, str]] = field(default_factory=list)

    def buffered_bytes(self) -> int:
        return self.buffered

    def send(self, payload: bytes) -> bool:
        self.sent.append(payload)
        return True

    def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))
        self.is_open = False


def make_api(
    *conns: FakeConnection, limits: Quotas | None = None, faults: FaultConfig | None = None
) -> ConnectionsApi:
    return ConnectionsApi(
        stage="api",
        connections={c.info.connection_id: c for c in conns},
        limits=limits or Quotas(),
        faults=FaultInjector(faults),
        request_id_factory=lambda: "req-1",
    )


def call(
    api: ConnectionsApi,
    method: str,
    path: str = PATH,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> Response:
    request = HttpRequest(
        method, path, "HTTP/1.1", SIGNED if headers is None else headers, body=body
    )
    return asyncio.run(api.handle(request))


def assert_error(response: Response, status: int, error_type: str, message: str) -> None:
    assert response.status == status
    assert response.header("x-amzn-ErrorType") == error_type
    assert response.header("x-amzn-RequestId") == "req-1"
    assert response.header("Content-Type") == "application/json"
    assert json.loads(response.body) == {"message": message}


def body_json(response: Response) -> Any:
    return json.loads(response.body)


def test_post_sends_the_body_to_the_connection() -> None:
    conn = FakeConnection()
    api = make_api(conn)
    response = call(api, "POST", body=b'{"type":"pong"}')
    assert response.status == 200
    assert response.header("x-amzn-RequestId") == "req-1"
    assert response.header("x-amzn-ErrorType") is None
    assert response.body == b""
    assert conn.sent == [b'{"type":"pong"}']
    assert (api.stats.posts, api.stats.posts_ok) == (1, 1)


def test_post_to_an_unknown_connection_is_gone() -> None:
    api = make_api()
    assert_error(call(api, "POST", body=b"x"), 410, "GoneException", "")
    assert (api.stats.posts, api.stats.gone, api.stats.posts_ok) == (1, 1, 0)


def test_post_to_a_closing_connection_is_gone() -> None:
    conn = FakeConnection(is_open=False)
    assert_error(call(make_api(conn), "POST", body=b"x"), 410, "GoneException", "")
    assert conn.sent == []


def test_post_over_the_data_limit_is_payload_too_large() -> None:
    conn = FakeConnection()
    api = make_api(conn, limits=Quotas(max_post_bytes=4))
    assert call(api, "POST", body=b"1234").status == 200
    response = call(api, "POST", body=b"12345")
    assert_error(response, 413, "PayloadTooLargeException", "Request entity too large")
    assert conn.sent == [b"1234"]
    assert api.stats.too_large == 1


def test_post_checks_the_size_before_the_connection() -> None:
    # The body is validated before the connection is looked up: 413 wins over 410.
    api = make_api(limits=Quotas(max_post_bytes=1))
    assert call(api, "POST", body=b"12").status == 413


def test_post_to_a_client_that_is_not_reading_is_throttled() -> None:
    conn = FakeConnection(buffered=1025)
    api = make_api(conn, limits=Quotas(send_buffer_limit=1024))
    response = call(api, "POST", body=b"x")
    assert_error(response, 429, "LimitExceededException", "Client buffer is full")
    assert conn.sent == []
    assert api.stats.throttled == 1
    conn.buffered = 1024
    assert call(api, "POST", body=b"x").status == 200


def test_injected_throttle_answers_429_without_sending() -> None:
    conn = FakeConnection()
    api = make_api(conn, faults=FaultConfig(throttle_rate=1.0))
    assert_error(call(api, "POST", body=b"x"), 429, "LimitExceededException", "Rate exceeded")
    assert conn.sent == []
    assert (api.stats.posts, api.stats.throttled) == (1, 1)


def test_injected_error_answers_500_without_sending() -> None:
    conn = FakeConnection()
    api = make_api(conn, faults=FaultConfig(error_rate=1.0))
    response = call(api, "POST", body=b"x")
    assert_error(response, 500, "InternalServerErrorException", "Internal server error")
    assert conn.sent == []
    assert api.stats.injected_errors == 1


def test_injected_faults_apply_to_posts_only() -> None:
    api = make_api(FakeConnection(), faults=FaultConfig(throttle_rate=1.0))
    assert call(api, "GET").status == 200


def test_injected_latency_delays_the_answer_but_not_a_refusal() -> None:
    api = make_api(FakeConnection(), faults=FaultConfig(latency_ms=200))
    started = time.monotonic()
    assert call(api, "POST", body=b"x").status == 200
    assert time.monotonic() - started >= 0.2
    started = time.monotonic()
    assert call(api, "POST", headers=[]).status == 403
    assert time.monotonic() - started < 0.2


def test_get_describes_the_connection() -> None:
    api = make_api(FakeConnection())
    response = call(api, "GET")
    assert response.status == 200
    assert response.header("Content-Type") == "application/json"
    assert body_json(response) == {
        "connectedAt": "2026-01-01T00:00:00.123Z",
        "identity": {"sourceIp": "203.0.113.7", "userAgent": "pytest"},
        "lastActiveAt": "2026-01-01T00:00:02.123Z",
    }
    assert api.stats.gets == 1


def test_get_of_an_unknown_connection_is_gone() -> None:
    api = make_api()
    assert_error(call(api, "GET"), 410, "GoneException", "")
    assert (api.stats.gets, api.stats.gone) == (1, 1)


def test_delete_closes_with_1000_and_answers_204() -> None:
    conn = FakeConnection()
    api = make_api(conn)
    response = call(api, "DELETE")
    assert response.status == 204
    assert response.body == b""
    assert response.header("x-amzn-RequestId") == "req-1"
    # AWS's $disconnect after DeleteConnection: 1000, "Connection Closed Normally".
    assert conn.closed == [(1000, "Connection Closed Normally")]
    assert api.stats.deletes == 1
    assert_error(call(api, "DELETE"), 410, "GoneException", "")


def test_unsigned_requests_are_forbidden_before_anything_else() -> None:
    conn = FakeConnection()
    api = make_api(conn)
    response = call(api, "POST", body=b"x", headers=[("Authorization", "Bearer abc")])
    assert_error(response, 403, "ForbiddenException", "Missing Authentication Token")
    assert conn.sent == []
    assert (api.stats.forbidden, api.stats.posts) == (1, 0)


@pytest.mark.parametrize(
    "path",
    [
        "/dev/@connections/R1kmxc2VNjMCFIA%3D",  # another stage
        "/api/connections/R1kmxc2VNjMCFIA%3D",
        "/api/@connections/",
        "/api/@connections",
        "/api/@connections/a/b",
        "/",
    ],
)
def test_other_paths_are_forbidden(path: str) -> None:
    api = make_api(FakeConnection())
    assert_error(call(api, "POST", path, body=b"x"), 403, "ForbiddenException", "Forbidden")
    assert api.stats.forbidden == 1


def test_other_methods_are_forbidden() -> None:
    api = make_api(FakeConnection())
    assert_error(call(api, "PUT", body=b"x"), 403, "ForbiddenException", "Forbidden")


def test_the_connection_id_is_url_decoded() -> None:
    # AWS's ids are URL-safe base64 but end in '='; '+' and '/' stay as an explicit edge
    # case: whatever a client percent-encodes is decoded.
    conn = FakeConnection()
    conn.info.connection_id = "a+b/c="
    api = make_api(conn)
    assert call(api, "GET", "/api/@connections/a%2Bb%2Fc%3D").status == 200


def test_limits_pop_from_takes_only_limit_fields() -> None:
    options: dict[str, Any] = {"idle_timeout": 0.5, "close_timeout": 1.0, "auth_mode": "none"}
    assert Quotas.pop_from(options) == Quotas(idle_timeout=0.5, close_timeout=1.0)
    assert options == {"auth_mode": "none"}


def custom_domain_api(base_path: str, *conns: FakeConnection) -> ConnectionsApi:
    api = make_api(*conns)
    api.custom_domain, api.base_path = "chat.example.com", base_path
    return api


def test_a_custom_domain_serves_connections_under_its_mapping_path_only() -> None:
    conn = FakeConnection()
    api = custom_domain_api("v1/chat", conn)
    on_domain = [*SIGNED, ("Host", "Chat.Example.com")]
    # https://chat.example.com/api/@connections (domainName + stage, what apps stored) is not
    # where AWS answers when the mapping path differs from the stage.
    assert_error(call(api, "POST", PATH, b"x", on_domain), 403, "ForbiddenException", "Forbidden")
    mapped = "/v1/chat/@connections/R1kmxc2VNjMCFIA%3D"
    assert call(api, "POST", mapped, b"hi", on_domain).status == 200
    # The execute-api host keeps answering at /{stage}, and never at the mapping path.
    on_execute_api = [*SIGNED, ("Host", "abc123def4.execute-api.us-east-1.amazonaws.com")]
    assert call(api, "POST", PATH, b"there", on_execute_api).status == 200
    assert call(api, "POST", mapped, b"x", on_execute_api).status == 403
    assert conn.sent == [b"hi", b"there"]


def test_a_custom_domain_mapped_at_its_root_serves_connections_there() -> None:
    conn = FakeConnection()
    api = custom_domain_api("", conn)
    on_domain = [*SIGNED, ("Host", "chat.example.com:443")]
    assert call(api, "GET", "/@connections/R1kmxc2VNjMCFIA%3D", headers=on_domain).status == 200
    assert call(api, "GET", PATH, headers=on_domain).status == 403


def test_a_custom_domain_mapped_at_the_stage_name_serves_the_stage_path() -> None:
    api = custom_domain_api("api", FakeConnection())
    assert call(api, "GET", PATH, headers=[*SIGNED, ("Host", "chat.example.com")]).status == 200


def test_the_account_quota_throttles_every_method_past_the_burst() -> None:
    conn = FakeConnection()
    api = make_api(conn, limits=Quotas(account_rps=0.001, account_burst=3))
    assert [call(api, m, body=b"x").status for m in ("POST", "GET", "DELETE")] == [200, 200, 204]
    for method in ("POST", "GET", "DELETE"):
        assert_error(call(api, method, body=b"x"), 429, "LimitExceededException", "Rate exceeded")
    assert conn.sent == [b"x"] and api.stats.quota_throttled == 3


def test_the_account_quota_is_shared_and_refills_at_its_rate() -> None:
    from local_gateway.token_bucket import TokenBucket

    clock = [0.0]
    bucket = TokenBucket(10, burst=2, clock=lambda: clock[0])
    first, second = make_api(FakeConnection()), make_api(FakeConnection())
    first.quota = second.quota = bucket  # two stages of one account
    assert [call(api, "GET").status for api in (first, second, first)] == [200, 200, 429]
    clock[0] += 0.1
    assert [call(api, "GET").status for api in (second, first)] == [200, 429]


def test_unsigned_calls_are_refused_before_they_spend_the_quota() -> None:
    api = make_api(FakeConnection(), limits=Quotas(account_rps=0.001, account_burst=1))
    assert call(api, "GET", headers=[]).status == 403
    assert call(api, "GET").status == 200


def test_without_a_quota_nothing_is_throttled() -> None:
    api = make_api(FakeConnection())
    assert {call(api, "GET").status for _ in range(50)} == {200}
    assert api.quota is None


def _signed_request(secret: str, body: bytes) -> HttpRequest:
    """A POST to PATH signed by botocore with key ``AKIDEXAMPLE`` and ``secret``."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    signed = AWSRequest(method="POST", url="http://127.0.0.1:8001" + PATH, data=body)
    SigV4Auth(BotoCredentials("AKIDEXAMPLE", secret), "execute-api", "us-east-1").add_auth(signed)
    headers = [("Host", "127.0.0.1:8001"), *signed.headers.items()]
    return HttpRequest("POST", PATH, "HTTP/1.1", headers, body=body)


def test_with_a_verifier_only_the_apps_signature_is_accepted() -> None:
    from local_gateway.sigv4 import SIGNATURE_MISMATCH, Credentials, SigV4Verifier

    conn = FakeConnection()
    api = make_api(conn)
    api.verifier = SigV4Verifier(
        Credentials("AKIDEXAMPLE", "app-secret"), "execute-api", "us-east-1"
    )
    assert asyncio.run(api.handle(_signed_request("app-secret", b"real"))).status == 200
    forged = asyncio.run(api.handle(_signed_request("guessed-secret", b"forged")))
    assert_error(forged, 403, "InvalidSignatureException", SIGNATURE_MISMATCH)
    # The shape of the old test header (a key, no signature) is refused too, not trusted.
    assert call(api, "POST", body=b"x").status == 403
    assert conn.sent == [b"real"]
    assert api.stats.forbidden == 2
