"""build_switchboard: the real collaborators, configured from the settings."""

from __future__ import annotations

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
    switchboard = build_switchboard(settings, session=session)
    assert switchboard.settings is settings
    assert isinstance(switchboard.registry, Registry)
    assert isinstance(switchboard.gateway, ManagementApi)
    config = switchboard.registry._ddb.meta.config
    assert config.max_pool_connections == 12 and config.read_timeout == 4.0
    assert config.retries == {"mode": "standard"}
    management = switchboard.gateway.client("https://abc.execute-api.us-east-1.amazonaws.com/api")
    assert management.meta.config.max_pool_connections == 12


def test_build_switchboard_gives_the_broadcaster_the_fan_out_deadline(aws_env: None) -> None:
    settings = Settings(table_name="t", auth_mode="none", fanout_deadline_seconds=7.5)
    switchboard = build_switchboard(settings, session=boto3.session.Session())
    assert switchboard.broadcaster._deadline_seconds == 7.5
