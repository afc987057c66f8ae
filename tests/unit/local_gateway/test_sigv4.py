"""SigV4 verification of requests signed with the gateway's credentials (local_gateway/sigv4.py)."""

from __future__ import annotations

import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from local_gateway.sigv4 import (
    SIGNATURE_MISMATCH,
    Credentials,
    SignatureError,
    SigV4Verifier,
)

URL = "http://127.0.0.1:8001/api/@connections/R1kmxc2VNjMCFIA%3D"
CREDS = Credentials("AKIAEXAMPLEEXAMPLE12", "secret-of-this-run")


def signed(
    body: bytes = b"hello",
    url: str = URL,
    creds: Credentials = CREDS,
    service: str = "execute-api",
    token: str | None = None,
) -> tuple[str, list[tuple[str, str]], bytes]:
    """(url, headers as sent, body) of a request botocore signed."""
    request = AWSRequest(method="POST", url=url, data=body)
    request.headers["Content-Type"] = "application/json"
    boto = BotoCredentials(creds.access_key_id, creds.secret_access_key, token)
    SigV4Auth(boto, service, "us-east-1").add_auth(request)
    host = url.split("/")[2]
    return url, [("Host", host), *request.headers.items()], body


def verify(url: str, headers: list[tuple[str, str]], body: bytes, **kwargs: float) -> None:
    SigV4Verifier(CREDS, "execute-api", "us-east-1").verify("POST", url, headers, body, **kwargs)


def error_of(
    url: str, headers: list[tuple[str, str]], body: bytes, **kwargs: float
) -> tuple[str, str]:
    with pytest.raises(SignatureError) as info:
        verify(url, headers, body, **kwargs)
    return info.value.error_type, info.value.message


def test_accepts_what_botocore_signed_with_the_credentials() -> None:
    verify(*signed())
    verify(*signed(token="session-token"))  # the token header is signed like any other
    verify(*signed(url="http://localhost:8001/api/@connections/x?b=2&a=1", body=b""))


def test_refuses_a_changed_body_a_wrong_secret_and_another_service() -> None:
    url, headers, _ = signed()
    assert error_of(url, headers, b"hellO") == ("InvalidSignatureException", SIGNATURE_MISMATCH)
    forged = signed(creds=Credentials(CREDS.access_key_id, "guessed"))
    assert error_of(*forged)[0] == "InvalidSignatureException"
    assert error_of(*signed(service="dynamodb"))[0] == "InvalidSignatureException"
    other_path = URL.replace("R1kmxc2VNjMCFIA", "another")
    assert error_of(other_path, headers, b"hello")[0] == "InvalidSignatureException"


def test_refuses_an_unknown_access_key() -> None:
    assert error_of(*signed(creds=Credentials("testing", "testing"))) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
    )


def test_refuses_an_old_signature() -> None:
    url, headers, body = signed()
    assert error_of(url, headers, body, now=time.time() + 16 * 60) == (
        "InvalidSignatureException",
        "Signature expired",
    )


def test_refuses_a_content_hash_header_that_is_not_the_body() -> None:
    url, headers, body = signed()
    lying = [*headers, ("X-Amz-Content-SHA256", "0" * 64)]
    assert error_of(url, lying, body)[0] == "InvalidSignatureException"


@pytest.mark.parametrize(
    "authorization",
    ["AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/...", "Bearer x", ""],
)
def test_refuses_a_malformed_authorization_header(authorization: str) -> None:
    url, headers, body = signed()
    headers = [(k, authorization if k == "Authorization" else v) for k, v in headers]
    assert error_of(url, headers, body)[0] == "IncompleteSignatureException"


def test_generated_credentials_differ_per_run_and_never_print_the_secret() -> None:
    first, second = Credentials.generate(), Credentials.generate()
    assert first != second
    assert first.access_key_id.startswith("AKIA") and len(first.access_key_id) == 20
    assert len(first.secret_access_key) >= 40
    assert first.secret_access_key not in repr(first)
