from __future__ import annotations

import pytest

from chalicelib.config import ConfigError, Settings


def test_defaults() -> None:
    settings = Settings.from_env({"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none"})
    assert settings.connection_ttl_seconds == 7500
    assert settings.fanout_workers == 64 and settings.management_endpoint is None


def test_reads_every_setting() -> None:
    settings = Settings.from_env(
        {
            "CONNECTIONS_TABLE": "t",
            "AUTH_MODE": "jwt",
            "JWT_SECRET": "s",
            "APIGW_MANAGEMENT_ENDPOINT": "http://127.0.0.1:8001/api/",
            "FANOUT_WORKERS": "128",
            "CONNECTION_TTL_SECONDS": "7300",
        }
    )
    assert settings.management_endpoint == "http://127.0.0.1:8001/api"
    assert settings.fanout_workers == 128 and settings.connection_ttl_seconds == 7300


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({}, "CONNECTIONS_TABLE"),
        ({"CONNECTIONS_TABLE": "t", "AUTH_MODE": "maybe"}, "AUTH_MODE"),
        ({"CONNECTIONS_TABLE": "t", "AUTH_MODE": "jwt"}, "JWT_SECRET"),
        (
            {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "FANOUT_WORKERS": "lots"},
            "FANOUT_WORKERS",
        ),
        ({"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "FANOUT_WORKERS": "0"}, "between"),
        (
            {
                "CONNECTIONS_TABLE": "t",
                "AUTH_MODE": "jwt",
                "JWT_SECRET": "s",
                "JWT_ALGORITHM": "none",
            },
            "JWT_ALGORITHM",
        ),
    ],
)
def test_bad_settings_name_the_variable(env: dict, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        Settings.from_env(env)


def test_asymmetric_algorithms_need_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    # The module as it is now: e2e tests re-import chalicelib when they switch projects.
    from chalicelib import config

    env = {
        "CONNECTIONS_TABLE": "t",
        "AUTH_MODE": "jwt",
        "JWT_SECRET": "pem",
        "JWT_ALGORITHM": "RS256",
    }
    monkeypatch.setattr(config, "_has_crypto", lambda: False)
    with pytest.raises(config.ConfigError, match="cryptography"):
        config.Settings.from_env(env)
    monkeypatch.setattr(config, "_has_crypto", lambda: True)
    assert config.Settings.from_env(env).jwt_algorithm == "RS256"
