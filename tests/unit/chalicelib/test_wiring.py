"""build_switchboard: the real collaborators, configured from the settings."""

from __future__ import annotations

from typing import Any

import boto3

from chalicelib.config import Settings
from chalicelib.management_api import ManagementApi
from chalicelib.registry import Registry
from chalicelib.wiring import build_switchboard


def test_build_switchboard_sizes_the_clients_from_the_settings(aws_env: None) -> None:
    settings = Settings(
        table_name="t", auth_mode="none", fanout_workers=12, all_shards=3, http_read_timeout=4.0
    )
    session = boto3.session.Session()
    made: dict[str, Any] = {}
    real_client = session.client

    def client(name: str, **options: Any) -> Any:
        made[name] = real_client(name, **options)  # type: ignore[call-overload]
        return made[name]

    session.client = client  # type: ignore[method-assign]
    switchboard = build_switchboard(settings, session=session)
    assert switchboard.settings is settings
    assert isinstance(switchboard.registry, Registry)
    assert isinstance(switchboard.gateway, ManagementApi)
    config = made["dynamodb"].meta.config
    assert config.max_pool_connections == 12 and config.read_timeout == 4.0
    assert config.retries == {"mode": "standard"}
    management = switchboard.gateway.client("https://abc.execute-api.us-east-1.amazonaws.com/api")
    assert management.meta.config.max_pool_connections == 12


def test_build_switchboard_gives_the_broadcaster_the_fan_out_deadline(aws_env: None) -> None:
    settings = Settings(table_name="t", auth_mode="none", fanout_deadline_seconds=7.5)
    switchboard = build_switchboard(settings, session=boto3.session.Session())
    assert switchboard.broadcaster._deadline_seconds == 7.5


def test_build_switchboard_paces_the_transport_as_configured(aws_env: None) -> None:
    settings = Settings(
        table_name="t", auth_mode="none", fanout_initial_rate=300.0, fanout_max_rate=1200.0
    )
    transport = build_switchboard(settings, session=boto3.session.Session()).gateway
    rate = transport._async_transport().rate  # type: ignore[union-attr]
    assert rate is not None and (rate.rate, rate.max_rate) == (300.0, 1200.0)
    off = Settings(table_name="t", auth_mode="none", fanout_rate_control="off")
    gateway = build_switchboard(off, session=boto3.session.Session()).gateway
    assert gateway._async_transport().rate is None  # type: ignore[union-attr]
