"""Deployed stages read the JWT secret (and the continuation job key) from SSM SecureStrings
named in JWT_SECRET_PARAMETER (CONTINUATION_KEY_PARAMETER), through wiring.read_secret_parameter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.config import ConfigError
from chalicelib.wiring import settings_from_env

PARAM = "/switchboard/test/jwt-secret"
VALUE = "s3cret-value-from-ssm-" + "x" * 16  # 38 bytes: HS256 needs at least 32


@pytest.fixture
def ssm(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def env(**extra: str) -> dict[str, str]:
    return {
        "CONNECTIONS_TABLE": "t",
        "AUTH_MODE": "jwt",
        "JWT_ISSUER": "https://auth.example.com/",
        "JWT_AUDIENCE": "switchboard",
        **extra,
    }


def test_reads_the_secure_string(ssm: Any) -> None:
    ssm.put_parameter(Name=PARAM, Value=VALUE, Type="SecureString")
    assert settings_from_env(env(JWT_SECRET_PARAMETER=PARAM)).jwt_secret == VALUE


def test_a_short_secret_in_the_parameter_is_refused_naming_it(ssm: Any) -> None:
    ssm.put_parameter(Name=PARAM, Value="s3cret-value", Type="SecureString")
    with pytest.raises(
        ConfigError,
        match="JWT_SECRET_PARAMETER '/switchboard/test/jwt-secret' must be at least 32 bytes "
        "for HS256 \\(got 12\\)",
    ):
        settings_from_env(env(JWT_SECRET_PARAMETER=PARAM))


def test_missing_parameter_is_a_config_error_naming_it(ssm: Any) -> None:
    with pytest.raises(ConfigError, match="JWT_SECRET_PARAMETER '/switchboard/test/jwt-secret'"):
        settings_from_env(env(JWT_SECRET_PARAMETER=PARAM))


def test_an_explicit_secret_wins_and_ssm_is_not_called(monkeypatch: pytest.MonkeyPatch) -> None:
    import chalicelib.wiring as wiring

    def boom(name: str, variable: str = "") -> str:
        raise AssertionError("SSM must not be called")

    monkeypatch.setattr(wiring, "read_secret_parameter", boom)
    direct = "direct-" + "d" * 32
    settings = wiring.settings_from_env(env(JWT_SECRET=direct, JWT_SECRET_PARAMETER=PARAM))
    assert settings.jwt_secret == direct
    local = wiring.settings_from_env(
        {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "JWT_SECRET_PARAMETER": PARAM}
    )
    assert local.auth_mode == "none"


def test_reads_the_continuation_key_parameter(ssm: Any) -> None:
    key = "continuation-key-" + "k" * 32
    ssm.put_parameter(Name="/switchboard/test/job-key", Value=key, Type="SecureString")
    settings = settings_from_env(
        {
            "CONNECTIONS_TABLE": "t",
            "AUTH_MODE": "none",
            "CONTINUATION_KEY_PARAMETER": "/switchboard/test/job-key",
        }
    )
    assert settings.continuation_key == key
    with pytest.raises(ConfigError, match="CONTINUATION_KEY_PARAMETER '/nope' could not be read"):
        settings_from_env(
            {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "CONTINUATION_KEY_PARAMETER": "/nope"}
        )
