from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from chalicelib.config import ConfigError, Settings
from tests.helpers import SECRET


def test_defaults() -> None:
    settings = Settings.from_env({"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none"})
    assert settings.connection_ttl_seconds == 7500
    assert settings.fanout_workers == 64 and settings.management_endpoint is None
    assert settings.jwt_max_lifetime_seconds == 86400
    assert settings.fanout_deadline_seconds == 25.0
    assert settings.fanout_rate_control == "aimd"
    assert (settings.fanout_initial_rate, settings.fanout_max_rate) == (3200.0, 10000.0)


def test_reads_every_setting() -> None:
    settings = Settings.from_env(
        {
            "CONNECTIONS_TABLE": "t",
            "AUTH_MODE": "jwt",
            "JWT_SECRET": SECRET,
            "JWT_ISSUER": " https://auth.example.com/ ",
            "JWT_AUDIENCE": "switchboard",
            "JWT_MAX_LIFETIME_SECONDS": "3600",
            "APIGW_MANAGEMENT_ENDPOINT": "http://127.0.0.1:8001/api/",
            "FANOUT_WORKERS": "128",
            "CONNECTION_TTL_SECONDS": "7300",
            "FANOUT_DEADLINE_SECONDS": "12.5",
            "FANOUT_RATE_CONTROL": "OFF",
            "FANOUT_INITIAL_RATE": "250",
            "FANOUT_MAX_RATE": "1000",
        }
    )
    assert settings.fanout_rate_control == "off"
    assert (settings.fanout_initial_rate, settings.fanout_max_rate) == (250.0, 1000.0)
    assert settings.management_endpoint == "http://127.0.0.1:8001/api"
    assert settings.fanout_workers == 128 and settings.connection_ttl_seconds == 7300
    assert settings.jwt_max_lifetime_seconds == 3600
    assert settings.fanout_deadline_seconds == 12.5
    assert (settings.jwt_issuer, settings.jwt_audience) == (
        "https://auth.example.com/",
        "switchboard",
    )


def _local(**settings: str) -> dict[str, str]:
    return {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", **settings}


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
            {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "JWT_MAX_LIFETIME_SECONDS": "a day"},
            "JWT_MAX_LIFETIME_SECONDS",
        ),
        (
            {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "JWT_MAX_LIFETIME_SECONDS": "0"},
            "JWT_MAX_LIFETIME_SECONDS must be between",
        ),
        (
            {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "FANOUT_DEADLINE_SECONDS": "soon"},
            "FANOUT_DEADLINE_SECONDS must be a number",
        ),
        (
            {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "FANOUT_DEADLINE_SECONDS": "0.05"},
            "FANOUT_DEADLINE_SECONDS must be between 0.1 and 900",
        ),
        (
            {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "FANOUT_DEADLINE_SECONDS": "nan"},
            "FANOUT_DEADLINE_SECONDS must be between",
        ),
        (_local(FANOUT_RATE_CONTROL="tcp"), "FANOUT_RATE_CONTROL must be one of aimd, off"),
        (_local(FANOUT_MAX_RATE="0"), "FANOUT_MAX_RATE must be between"),
        (
            _local(FANOUT_INITIAL_RATE="2e4"),
            "FANOUT_INITIAL_RATE .* must not exceed FANOUT_MAX_RATE",
        ),
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

    env = jwt_env("pem", "RS256")
    monkeypatch.setattr(config, "_has_crypto", lambda: False)
    with pytest.raises(config.ConfigError, match="cryptography"):
        config.Settings.from_env(env)
    monkeypatch.setattr(config, "_has_crypto", lambda: True)
    assert config.Settings.from_env(env).jwt_algorithm == "RS256"


def jwt_env(secret: str, algorithm: str = "HS256") -> dict[str, str]:
    return {
        "CONNECTIONS_TABLE": "t",
        "AUTH_MODE": "jwt",
        "JWT_SECRET": secret,
        "JWT_ALGORITHM": algorithm,
        "JWT_ISSUER": "https://auth.example.com/",
        "JWT_AUDIENCE": "switchboard",
    }


@pytest.mark.parametrize(("algorithm", "minimum"), [("HS256", 32), ("HS384", 48), ("HS512", 64)])
def test_short_hmac_secrets_are_refused(algorithm: str, minimum: int) -> None:
    short = "k" * (minimum - 1)
    message = (
        f"JWT_SECRET must be at least {minimum} bytes for {algorithm} (got {minimum - 1}); "
        "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        Settings.from_env(jwt_env(short, algorithm))
    assert Settings.from_env(jwt_env(short + "k", algorithm)).jwt_secret == short + "k"


def test_secret_length_counts_bytes_not_characters() -> None:
    with pytest.raises(ConfigError, match="got 30"):
        Settings.from_env(jwt_env("é" * 15))  # 15 characters, 30 bytes in UTF-8
    assert Settings.from_env(jwt_env("é" * 16)).jwt_secret == "é" * 16


def test_a_public_key_is_not_held_to_the_secret_length(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import config

    monkeypatch.setattr(config, "_has_crypto", lambda: True)
    assert config.Settings.from_env(jwt_env("pem", "ES256")).jwt_secret == "pem"


@pytest.mark.parametrize("missing", ["JWT_ISSUER", "JWT_AUDIENCE"])
@pytest.mark.parametrize("value", [None, "", "  "])
def test_jwt_mode_refuses_to_start_without_issuer_and_audience(
    missing: str, value: str | None
) -> None:
    env = jwt_env(SECRET)
    if value is None:
        del env[missing]
    else:
        env[missing] = value
    with pytest.raises(ConfigError, match=f"{missing} is required with AUTH_MODE=jwt") as info:
        Settings.from_env(env)
    assert info.value.setting == missing
    # Local mode checks no tokens: neither is needed there.
    assert Settings.from_env({**env, "AUTH_MODE": "none"}).auth_mode == "none"


def test_no_auth_is_refused_inside_lambda() -> None:
    local = {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none"}
    deployed = {**local, "AWS_LAMBDA_FUNCTION_NAME": "switchboard-dev-connect"}
    with pytest.raises(
        ConfigError,
        match="AUTH_MODE=none is for the local gateway only; deployed functions must use jwt",
    ):
        Settings.from_env(deployed)
    assert Settings.from_env(local).auth_mode == "none"
    assert Settings.from_env({**deployed, **jwt_env(SECRET)}).auth_mode == "jwt"


def test_idempotency_ttl_defaults_to_a_day_and_is_bounded() -> None:
    base = {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none"}
    assert Settings.from_env(base).idempotency_ttl_seconds == 86400
    assert (
        Settings.from_env({**base, "IDEMPOTENCY_TTL_SECONDS": "600"}).idempotency_ttl_seconds == 600
    )
    with pytest.raises(ConfigError, match="IDEMPOTENCY_TTL_SECONDS must be between"):
        Settings.from_env({**base, "IDEMPOTENCY_TTL_SECONDS": "5"})


LIMIT_DEFAULTS = {
    "MAX_CONNECTIONS_PER_USER": 10,
    "MAX_ROOMS_PER_USER": 50,
    "MESSAGE_RATE": 10.0,
    "MESSAGE_BURST": 20,
}


def test_abuse_limits_default_and_read_from_the_environment() -> None:
    base = {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none"}
    settings = Settings.from_env(base)
    assert (
        settings.max_connections_per_user,
        settings.max_rooms_per_user,
        settings.message_rate,
        settings.message_burst,
    ) == tuple(LIMIT_DEFAULTS.values())
    settings = Settings.from_env(
        {
            **base,
            "MAX_CONNECTIONS_PER_USER": "3",
            "MAX_ROOMS_PER_USER": "7",
            "MESSAGE_RATE": "0.5",
            "MESSAGE_BURST": "4",
        }
    )
    assert settings.max_connections_per_user == 3 and settings.max_rooms_per_user == 7
    assert settings.message_rate == 0.5 and settings.message_burst == 4


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_CONNECTIONS_PER_USER", "0"),
        ("MAX_ROOMS_PER_USER", "-1"),
        ("MESSAGE_RATE", "0"),
        ("MESSAGE_RATE", "nan"),
        ("MESSAGE_BURST", "0"),
        ("MESSAGE_BURST", "many"),
    ],
)
def test_bad_abuse_limits_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", name: value})


def test_the_deployed_stages_carry_the_documented_limits() -> None:
    config = json.loads((Path(__file__).parents[3] / ".chalice" / "config.json").read_text())
    env = config["environment_variables"]
    assert {name: float(env[name]) for name in LIMIT_DEFAULTS} == LIMIT_DEFAULTS


def test_every_declared_setting_is_documented_with_its_default() -> None:
    """Each setting is declared once (config.Settings: variable, default, bounds); the table
    in docs/CONFIGURATION.md must name every variable, with the same default where it is one
    plain value."""
    from dataclasses import fields

    doc = (Path(__file__).parents[3] / "docs" / "CONFIGURATION.md").read_text(encoding="utf-8")
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2:
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0]):
                rows[name] = cells[1]
    declared = [(f.metadata["var"].env, f.default) for f in fields(Settings) if "var" in f.metadata]
    assert len(declared) >= 25
    for env, default in declared:
        assert env in rows, f"{env} is not in docs/CONFIGURATION.md"
        plain = re.fullmatch(r"`([0-9.]+|[a-z-]+)`", rows[env])
        if plain and default is not None:
            if isinstance(default, bool):
                assert plain.group(1) == str(default).lower(), env
            elif isinstance(default, str):
                assert plain.group(1) == default, env
            else:
                assert float(plain.group(1)) == float(default), env


QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/switchboard-continuation"


def test_a_continuation_queue_needs_a_job_key() -> None:
    # Locally (no JWT secret to derive one from) the key must be given.
    with pytest.raises(ConfigError, match="CONTINUATION_KEY") as info:
        Settings.from_env(_local(CONTINUATION_QUEUE_URL=QUEUE))
    assert info.value.setting == "CONTINUATION_KEY"
    with pytest.raises(ConfigError, match="CONTINUATION_KEY must be at least 32 bytes"):
        Settings.from_env(_local(CONTINUATION_QUEUE_URL=QUEUE, CONTINUATION_KEY="short"))
    key = "k" * 32
    assert Settings.from_env(_local(CONTINUATION_KEY=key)).continuation_key == key
    # A stage with an HMAC JWT secret derives it (continuation_guard.job_key).
    derived = Settings.from_env({**jwt_env(SECRET), "CONTINUATION_QUEUE_URL": QUEUE})
    assert derived.continuation_key is None
    assert derived.continuation_job_ttl_seconds == 900


def test_the_continuation_key_parameter_is_read_through_read_secret() -> None:
    """Like JWT_SECRET_PARAMETER: config makes no AWS call, the reader wiring passes does."""
    asked: list[tuple[str, str]] = []

    def read_secret(name: str, variable: str) -> str:
        asked.append((name, variable))
        return "k" * 40

    env = _local(CONTINUATION_QUEUE_URL=QUEUE, CONTINUATION_KEY_PARAMETER="/sb/job-key")
    assert Settings.from_env(env, read_secret=read_secret).continuation_key == "k" * 40
    assert asked == [("/sb/job-key", "CONTINUATION_KEY_PARAMETER")]
    with pytest.raises(ConfigError, match="CONTINUATION_KEY_PARAMETER is set but nothing"):
        Settings.from_env(env)
    # An explicit key wins: SSM is not asked.
    explicit = Settings.from_env({**env, "CONTINUATION_KEY": "e" * 32}, read_secret=read_secret)
    assert explicit.continuation_key == "e" * 32 and len(asked) == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("true", True), ("ON", True), ("1", True), ("false", False),
     ("no", False)],
)  # fmt: skip
def test_dm_delivery_receipts_default_by_auth_mode(
    value: str | None, expected: bool | None
) -> None:
    env = _local() if value is None else _local(DM_DELIVERY_RECEIPTS=value)
    settings = Settings.from_env(env)
    assert settings.dm_delivery_receipts is expected
    # Unset: on with AUTH_MODE=none (anyone may read any user's stream there), off with jwt.
    assert settings.dm_receipts is (True if expected is None else expected)
    jwt_settings = Settings.from_env({**jwt_env(SECRET), **env, "AUTH_MODE": "jwt"})
    assert jwt_settings.dm_receipts is (False if expected is None else expected)


def test_a_bad_dm_delivery_receipts_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="DM_DELIVERY_RECEIPTS must be true or false"):
        Settings.from_env(_local(DM_DELIVERY_RECEIPTS="maybe"))


def test_continuation_queue_by_name_and_batch_mode() -> None:
    base = {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none"}
    settings = Settings.from_env(base)
    assert (settings.continuation_queue_name, settings.continuation_partial_batch) == (None, False)
    settings = Settings.from_env(
        {
            **base,
            "CONTINUATION_QUEUE_NAME": "sb-dev-q",
            "CONTINUATION_PARTIAL_BATCH": "true",
            "CONTINUATION_KEY": "k" * 32,
        }
    )
    assert (settings.continuation_queue_name, settings.continuation_partial_batch) == (
        "sb-dev-q",
        True,
    )
    for name, value in (
        ("CONTINUATION_QUEUE_NAME", "https://sqs.us-east-1.amazonaws.com/1/q"),  # a URL, not a name
        ("CONTINUATION_QUEUE_NAME", "x" * 81),
        ("CONTINUATION_PARTIAL_BATCH", "maybe"),
    ):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**base, name: value})


def test_a_queue_known_by_name_is_looked_up_once() -> None:
    from chalicelib.continuation import QueueByName

    calls: list[str] = []

    class Sqs:
        def get_queue_url(self, QueueName: str) -> dict[str, str]:  # noqa: N803 - boto3's name
            calls.append(QueueName)
            return {"QueueUrl": f"https://sqs.example/123456789012/{QueueName}"}

    url = QueueByName(Sqs(), "sb-dev-q")
    assert url() == url() == "https://sqs.example/123456789012/sb-dev-q"
    assert calls == ["sb-dev-q"]
