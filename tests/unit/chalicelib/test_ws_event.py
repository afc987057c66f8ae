"""The management endpoint the app derives from a WebSocket event (custom domains included)."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.config import ConfigError, EndpointRule, Settings
from chalicelib.ws_event import WsEvent, management_endpoint

EXECUTE_API = "https://abc123def4.execute-api.eu-west-1.amazonaws.com/api"


def event(domain: str, stage: str = "api", api_id: str = "abc123def4") -> dict[str, Any]:
    return {"requestContext": {"domainName": domain, "stage": stage, "apiId": api_id}}


def test_execute_api_mode_uses_the_api_id_and_region_not_the_dialled_domain() -> None:
    rule = EndpointRule(region="eu-west-1")
    dialled_directly = WsEvent(event("abc123def4.execute-api.eu-west-1.amazonaws.com"), rule)
    through_custom_domain = WsEvent(event("chat.example.com"), rule)
    assert dialled_directly.endpoint == EXECUTE_API
    # AWS: the custom domain's mapping path need not be the stage, so
    # https://chat.example.com/api would fail; the execute-api endpoint answers either way.
    assert through_custom_domain.endpoint == EXECUTE_API


def test_execute_api_mode_in_a_china_region() -> None:
    rule = EndpointRule(region="cn-north-1")
    assert management_endpoint("chat.example.cn", "prod", "abc123def4", rule) == (
        "https://abc123def4.execute-api.cn-north-1.amazonaws.com.cn/prod"
    )


def test_domain_mode_uses_the_custom_domain_and_its_mapping_path() -> None:
    with_path = EndpointRule(mode="domain", region="eu-west-1", base_path="v1/chat")
    at_root = EndpointRule(mode="domain", region="eu-west-1")
    assert WsEvent(event("chat.example.com"), with_path).endpoint == (
        "https://chat.example.com/v1/chat"
    )
    # An API mapping without a path: @connections sits at the domain's root.
    assert WsEvent(event("chat.example.com"), at_root).endpoint == "https://chat.example.com"


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        (event("chat.example.com", api_id=""), EndpointRule(region="eu-west-1")),
        (event("chat.example.com"), EndpointRule(region=None)),
        (event("", stage="api"), EndpointRule(mode="domain")),
        (event("chat.example.com", stage=""), EndpointRule(region="eu-west-1")),
        ({}, EndpointRule(region="eu-west-1")),
    ],
)
def test_no_endpoint_when_the_event_does_not_say_enough(raw: dict[str, Any], rule: Any) -> None:
    assert WsEvent(raw, rule).endpoint is None


def test_without_a_rule_the_event_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.delenv("MANAGEMENT_ENDPOINT_MODE", raising=False)
    assert WsEvent(event("chat.example.com")).endpoint == EXECUTE_API
    monkeypatch.setenv("MANAGEMENT_ENDPOINT_MODE", "domain")
    monkeypatch.setenv("MANAGEMENT_BASE_PATH", "/orders/")
    assert WsEvent(event("chat.example.com")).endpoint == "https://chat.example.com/orders"


def test_settings_read_the_rule() -> None:
    base = {"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", "AWS_REGION": "eu-west-1"}
    assert Settings.from_env(base).endpoint_rule == EndpointRule("execute-api", "eu-west-1", "")
    rule = Settings.from_env(
        {**base, "MANAGEMENT_ENDPOINT_MODE": "Domain", "MANAGEMENT_BASE_PATH": "v1"}
    ).endpoint_rule
    assert rule == EndpointRule("domain", "eu-west-1", "v1")


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"MANAGEMENT_ENDPOINT_MODE": "stage"}, "MANAGEMENT_ENDPOINT_MODE must be one of"),
        ({"MANAGEMENT_BASE_PATH": "v1 chat"}, "MANAGEMENT_BASE_PATH must be an API mapping"),
        ({"MANAGEMENT_BASE_PATH": "a//b"}, "MANAGEMENT_BASE_PATH"),
        ({"MANAGEMENT_BASE_PATH": "x" * 301}, "at most 300"),
    ],
)
def test_bad_endpoint_settings_are_refused(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as raised:
        Settings.from_env({"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none", **env})
    assert raised.value.setting in ("MANAGEMENT_ENDPOINT_MODE", "MANAGEMENT_BASE_PATH")
