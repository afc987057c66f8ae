"""The transport's PostSigner signs exactly as botocore's SigV4Auth does."""

from __future__ import annotations

import datetime
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from chalicelib.transport import PostSigner

IDS = ["R1kmxc2VNjMCFIA=", "a+b/c=", "plain", "x" * 40, "Zm9v~bar_-.", "%41"]


def _reference(creds: Credentials, region: str, url: str, data: bytes) -> dict[str, str]:
    request = AWSRequest(method="POST", url=url, data=data)
    SigV4Auth(creds.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE token/with+chars=="])
@pytest.mark.parametrize(
    "origin,host",
    [
        (
            "https://abc123.execute-api.eu-west-1.amazonaws.com",
            "abc123.execute-api.eu-west-1.amazonaws.com",
        ),
        ("http://127.0.0.1:8001", "127.0.0.1:8001"),
        ("https://example.com:443", "example.com"),
    ],
)
def test_matches_sigv4auth(token: str | None, origin: str, host: str) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    signer = PostSigner()
    data = b'{"type":"message","text":"h\xc3\xa9llo"}'
    moments = [
        datetime.datetime(2026, 11, 25, 12, 0, 0),
        datetime.datetime(2026, 11, 25, 23, 59, 59),
        datetime.datetime(2026, 11, 26, 0, 0, 1),  # a new day: a new signing key
    ]
    for moment in moments:
        with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
            for cid in IDS:
                path = f"/api/@connections/{quote(cid, safe='')}"
                for region in ("us-east-1", "eu-west-1"):
                    ours = signer.headers(
                        creds.get_frozen_credentials(), region, "POST", host, path, data
                    )
                    theirs = _reference(creds, region, origin + path, data)
                    assert ours == theirs


def test_payload_hash_follows_the_payload() -> None:
    creds = Credentials("AKID", "secret", None).get_frozen_credentials()
    signer = PostSigner()
    moment = datetime.datetime(2026, 11, 25, 12, 0, 0)
    with mock.patch("botocore.auth.get_current_datetime", return_value=moment):
        first = signer.headers(creds, "us-east-1", "POST", "h", "/api/@connections/a", b"one")
        second = signer.headers(creds, "us-east-1", "POST", "h", "/api/@connections/a", b"two")
        again = signer.headers(creds, "us-east-1", "POST", "h", "/api/@connections/a", b"one")
    assert first["Authorization"] != second["Authorization"]
    assert first == again
