"""The committed .chalice/policy-<stage>.json files: generated, current, no wildcard actions."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import cfnlint
import pytest

from deploy import policy, template
from deploy.project import CHALICE_DIR, stage, stages


@cache
def known_actions() -> dict[str, set[str]]:
    """IAM actions per service prefix, from the data cfn-lint ships (lower case)."""
    path = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {prefix: set(service["Actions"]) for prefix, service in data.items()}


def all_statements(stage_name: str) -> list[dict[str, Any]]:
    out = list(policy.stage_policy(stage_name)["Statement"])
    for access in policy.FUNCTIONS:
        out += template.role_policy(access, stage(stage_name))["Statement"]
    return out


def test_policy_files_are_current() -> None:
    assert policy.main(["--check"]) == 0, "run: python -m deploy.policy"


@pytest.mark.parametrize("stage_name", stages())
def test_stage_file_is_the_stage_and_config_points_at_it(stage_name: str) -> None:
    s = stage(stage_name)
    text = (CHALICE_DIR / s.policy_file).read_text(encoding="utf-8")
    assert json.loads(text) == policy.stage_policy(stage_name)
    assert f"table/{s.table_name}" in text
    assert f"parameter{s.secret_parameter}" in text
    others = [stage(o).table_name for o in stages() if o != stage_name]
    assert not any(other in text for other in others)


@pytest.mark.parametrize("stage_name", stages())
def test_no_wildcard_actions_and_every_action_exists(stage_name: str) -> None:
    known = known_actions()
    for st in all_statements(stage_name):
        assert st["Effect"] == "Allow"
        for action in st["Action"]:
            assert "*" not in action, action
            prefix, name = action.split(":")
            assert name.lower() in known[prefix], f"{action} is not an IAM action"


def test_transactions_are_authorised_per_item() -> None:
    # dynamodb:TransactWriteItems is not an IAM action; granting it would do nothing.
    assert "transactwriteitems" not in known_actions()["dynamodb"]
    message = policy.function("websocket_message")
    assert {"PutItem", "UpdateItem", "DeleteItem"} <= set(message.table_actions)


def test_functions_match_the_app_handlers() -> None:
    import app as app_module

    handlers = {h.route_key_handled for h in app_module.app.websocket_handlers.values()}
    assert handlers == {"$connect", "$default", "$disconnect"}
    assert {f.chalice_name for f in policy.FUNCTIONS} == {
        "websocket_connect",
        "websocket_message",
        "websocket_disconnect",
        "api_handler",
    }
