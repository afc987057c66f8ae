"""Per-run AWS credentials for the app, and SigV4 verification of requests signed with them.

The gateway listens on a developer's machine: any local process can reach its ports. So the
app gets credentials of this run only, and the gateway refuses @connections and embedded
DynamoDB requests not signed with them (as AWS refuses a forged signature).

Verification recomputes the signature with botocore's own signer (``botocore.auth.SigV4Auth``)
over the request as received, at the request's own ``X-Amz-Date``, and compares. The error
types are AWS's common errors ("Common Errors", any AWS API reference, e.g.
https://docs.aws.amazon.com/emr/latest/APIReference/CommonErrors.html): an unknown access key
is ``UnrecognizedClientException`` ("The security token included in the request is
invalid."), a wrong signature ``InvalidSignatureException`` (the message below is AWS's), a
date more than 15 minutes off ``InvalidSignatureException`` ("Signature expired").
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import secrets
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
UNKNOWN_KEY = "The security token included in the request is invalid."
# "more than 15 minutes after the date stamp on the request" (Common Errors, RequestExpired).
MAX_SKEW_SECONDS = 15 * 60

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request,\s*SignedHeaders=(?P<signed>[a-z0-9;\-]+),"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})$"
)


@dataclass(frozen=True)
class Credentials:
    """An access key pair. ``repr`` hides the secret so it never reaches a log."""

    access_key_id: str
    secret_access_key: str

    @classmethod
    def generate(cls) -> Credentials:
        """Random credentials for one run, shaped like AWS's (``AKIA`` + 16, 40 chars)."""
        alphabet = string.ascii_uppercase + string.digits
        key_id = "AKIA" + "".join(secrets.choice(alphabet) for _ in range(16))
        return cls(key_id, secrets.token_urlsafe(30))

    def boto3_kwargs(self) -> dict[str, str]:
        return {
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
        }

    def __repr__(self) -> str:
        return f"Credentials(access_key_id={self.access_key_id!r}, secret_access_key=***)"


class SignatureError(Exception):
    """Why a request is refused: the AWS error type and its message."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message


class SigV4Verifier:
    """Checks requests signed by ``credentials`` for ``service`` in ``region``.

    ``service`` may name several services (the embedded moto server answers DynamoDB and SQS
    on one port): a request is checked for the service its credential scope names, if listed.
    """

    def __init__(
        self,
        credentials: Credentials,
        service: str | tuple[str, ...],
        region: str,
        max_skew: float = MAX_SKEW_SECONDS,
    ) -> None:
        self.credentials = credentials
        self.services = (service,) if isinstance(service, str) else service
        self.region = region
        self.max_skew = max_skew

    def verify(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        now: float | None = None,
    ) -> None:
        """Raise ``SignatureError`` unless the request carries a valid signature.

        ``url`` is ``http://{Host}{target as sent}``; ``headers`` as received.
        """
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials as BotoCredentials

        header_list = list(headers)
        lower: dict[str, list[str]] = {}
        for name, value in header_list:
            lower.setdefault(name.lower(), []).append(value)
        match = _AUTH_RE.match(" ".join(lower.get("authorization", [""])[0].split()))
        if match is None:
            raise SignatureError(
                "IncompleteSignatureException", "Authorization header is malformed"
            )
        if not hmac.compare_digest(match["key"], self.credentials.access_key_id):
            raise SignatureError("UnrecognizedClientException", UNKNOWN_KEY)
        if match["service"] not in self.services or match["region"] != self.region:
            raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH)
        amz_date = (lower.get("x-amz-date") or [""])[0]
        try:
            signed_at = calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))
        except ValueError:
            raise SignatureError("IncompleteSignatureException", "X-Amz-Date is missing") from None
        if abs((time.time() if now is None else now) - signed_at) > self.max_skew:
            raise SignatureError("InvalidSignatureException", "Signature expired")
        if amz_date[:8] != match["date"]:
            raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH)
        content_sha = lower.get("x-amz-content-sha256")
        if content_sha and content_sha[0] != hashlib.sha256(body).hexdigest():
            # botocore trusts this header instead of hashing: never let it stand for the body.
            raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH)
        signed = match["signed"].split(";")
        if "host" not in signed or any(name not in lower for name in signed):
            raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH)
        request = AWSRequest(method=method, url=url, data=body)
        for name, value in header_list:
            if name.lower() in signed:
                request.headers[name] = value  # appends: repeated headers are signed joined
        request.context["timestamp"] = amz_date
        signer = SigV4Auth(
            BotoCredentials(self.credentials.access_key_id, self.credentials.secret_access_key),
            match["service"],
            self.region,
        )
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        if not hmac.compare_digest(expected, match["signature"]):
            raise SignatureError("InvalidSignatureException", SIGNATURE_MISMATCH)
