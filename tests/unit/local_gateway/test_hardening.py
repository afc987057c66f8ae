"""The local gateway's protection of a developer's machine, without sockets: Host and Origin
allow-lists, accept-error log limiting, the embedded DynamoDB's signature check, and secrets
kept off the command line."""

from __future__ import annotations

import errno
import io
import json
import logging
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from local_gateway import cli
from local_gateway.dynamodb import _SignedOnly
from local_gateway.http11 import HttpRequest
from local_gateway.port_guard import AcceptErrorLog, default_hosts, host_allowed, origin_allowed
from local_gateway.sigv4 import Credentials, SigV4Verifier


def request(**headers: str) -> HttpRequest:
    return HttpRequest(
        "GET", "/api", "HTTP/1.1", [(k.replace("_", "-"), v) for k, v in headers.items()]
    )


# -- Host (DNS rebinding) and Origin ----------------------------------------------------------


def test_host_must_name_the_bound_address() -> None:
    allowed = default_hosts("127.0.0.1", 8001)
    for host in ("127.0.0.1:8001", "localhost:8001", "LOCALHOST:8001", "127.0.0.1"):
        assert host_allowed(request(Host=host), allowed), host
    # A rebinding page's requests carry its own name; a missing Host names nothing.
    for host in ("evil.example:8001", "evil.example", "127.0.0.1:9999"):
        assert not host_allowed(request(Host=host), allowed), host
    assert not host_allowed(request(), allowed)


def test_host_allow_list_is_configurable() -> None:
    allowed = default_hosts("0.0.0.0", 8001) | {"devbox.lan:8001"}
    assert host_allowed(request(Host="devbox.lan:8001"), allowed)
    assert host_allowed(request(Host="anything"), allowed | {"*"})
    assert "[::1]:8001" in default_hosts("::1", 8001)


def test_origin_allow_list_admits_clients_without_origin() -> None:
    allowed = {"http://127.0.0.1:8000"}
    assert origin_allowed(request(), allowed)  # wscat, boto3, the app's own tests
    assert origin_allowed(request(Origin="http://127.0.0.1:8000"), allowed)
    assert not origin_allowed(request(Origin="https://evil.example"), allowed)
    assert not origin_allowed(request(Origin="null"), allowed)
    assert origin_allowed(request(Origin="https://evil.example"), allowed | {"*"})


# -- accept() out of descriptors --------------------------------------------------------------


def test_accept_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    errors = AcceptErrorLog(interval=10.0, clock=lambda: now[0])
    context: dict[str, Any] = {"exception": OSError(errno.EMFILE, "Too many open files")}
    assert errors.handles(context)
    assert not errors.handles({"exception": ValueError("other")})
    with caplog.at_level(logging.WARNING, logger="local_gateway"):
        for _ in range(500):  # asyncio retries every second; a flood in a loop here
            errors.record(context)
        now[0] = 10.5
        errors.record(context)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "499 more" in lines[1] and "ulimit -n" in lines[0]


# -- the embedded DynamoDB's signature check --------------------------------------------------

APP = Credentials("AKIAAPPAPPAPPAPPAPP1", "app-secret")


def wsgi_environ(creds: Credentials | None, body: bytes = b'{"TableName":"t"}') -> dict[str, Any]:
    signed = AWSRequest(method="POST", url="http://127.0.0.1:5000/", data=body)
    signed.headers["Content-Type"] = "application/x-amz-json-1.0"
    signed.headers["X-Amz-Target"] = "DynamoDB_20120810.Scan"
    if creds is not None:
        boto = BotoCredentials(creds.access_key_id, creds.secret_access_key)
        SigV4Auth(boto, "dynamodb", "us-east-1").add_auth(signed)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/",
        "QUERY_STRING": "",
        "HTTP_HOST": "127.0.0.1:5000",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }
    for name, value in signed.headers.items():
        key = name.upper().replace("-", "_")
        environ[key if key == "CONTENT_TYPE" else "HTTP_" + key] = value
    return environ


def run_wsgi(environ: dict[str, Any]) -> tuple[str, bytes, list[bytes]]:
    seen: list[bytes] = []

    def moto(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"].read())
        start_response("200 OK", [])
        return [b"{}"]

    statuses: list[str] = []
    app = _SignedOnly(moto, SigV4Verifier(APP, "dynamodb", "us-east-1"))
    body = b"".join(app(environ, lambda status, headers: statuses.append(status)))
    return statuses[0], body, seen


def test_dynamodb_serves_requests_signed_with_the_apps_credentials() -> None:
    status, body, seen = run_wsgi(wsgi_environ(APP))
    assert status == "200 OK" and body == b"{}"
    assert seen == [b'{"TableName":"t"}']  # moto still reads the whole body


@pytest.mark.parametrize(
    ("creds", "error_type"),
    [
        (None, "MissingAuthenticationTokenException"),
        (Credentials("testing", "testing"), "UnrecognizedClientException"),
        (Credentials(APP.access_key_id, "guessed"), "InvalidSignatureException"),
    ],
)
def test_dynamodb_refuses_other_requests_as_dynamodb_does(
    creds: Credentials | None, error_type: str
) -> None:
    status, body, seen = run_wsgi(wsgi_environ(creds))
    assert status.startswith("400")
    assert json.loads(body)["__type"] == f"com.amazon.coral.service#{error_type}"
    assert seen == []


# -- secrets stay off the command line --------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["JWT_SECRET", "API_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY", "jwt_secret"]
)
def test_env_refuses_secret_looking_names(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.build_parser().parse_args(["--env", f"{name}=value"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "visible to every local user" in err
    assert "--env-file" in err and f"--env-from-environ {name}" in err


def test_env_file_and_environ_give_the_app_its_secrets(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_text("# local secrets\n\nJWT_SECRET=from-file=with-equals\nLOG_LEVEL=INFO\n")
    monkeypatch.setenv("API_TOKEN", "from-environ")
    args = cli.build_parser().parse_args(
        ["--env-file", str(env_file), "--env-from-environ", "API_TOKEN", "--env", "LOG_LEVEL=DEBUG"]
    )
    assert cli.app_environment(args) == {
        "JWT_SECRET": "from-file=with-equals",
        "API_TOKEN": "from-environ",
        "LOG_LEVEL": "DEBUG",  # --env wins
    }


def test_bad_env_sources_are_clear_errors(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    args = cli.build_parser().parse_args(["--env-from-environ", "NOT_SET_ANYWHERE"])
    with pytest.raises(ValueError, match="NOT_SET_ANYWHERE: not set"):
        cli.app_environment(args)
    bad = tmp_path / "bad.env"
    bad.write_text("JWT_SECRET\n")
    with pytest.raises(ValueError, match=r"bad.env:1: expected KEY=VALUE"):
        cli.read_env_file(str(bad))


def test_generated_secrets_are_random_and_lose_to_given_ones(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    parse = cli.build_parser().parse_args
    first = cli.app_environment(parse(["--generate-secret", "CONTINUATION_KEY"]))
    second = cli.app_environment(parse(["--generate-secret", "CONTINUATION_KEY"]))
    assert len(first["CONTINUATION_KEY"]) >= 32
    assert first["CONTINUATION_KEY"] != second["CONTINUATION_KEY"]
    env_file = tmp_path / "app.env"
    env_file.write_text("CONTINUATION_KEY=" + "g" * 40 + "\n")
    given = parse(["--env-file", str(env_file), "--generate-secret", "CONTINUATION_KEY"])
    assert cli.app_environment(given)["CONTINUATION_KEY"] == "g" * 40
