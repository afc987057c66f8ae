"""The committed .chalice/policy-<stage>-<function>.json files: generated, current, attached
by config.json to their function, no wildcard actions, no reach into another stage."""

from __future__ import annotations

import dataclasses
import json
from functools import cache
from pathlib import Path
from typing import Any

import cfnlint
import pytest
from chalice.config import Config

from deploy import policy, template
from deploy.project import CHALICE_DIR, chalice_config, stage, stages
from tests.deploy.iam_eval import allowed

METHODS = ("POST", "DELETE", "GET")  # @connections: send, close, info


@cache
def known_actions() -> dict[str, set[str]]:
    """IAM actions per service prefix, from the data cfn-lint ships (lower case)."""
    path = Path(cfnlint.__file__).parent / "data" / "AdditionalSpecs" / "Policies.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return {prefix: set(service["Actions"]) for prefix, service in data.items()}


def attached_statements(stage_name: str, function_name: str) -> list[dict[str, Any]]:
    """What ``chalice deploy`` attaches to the function's role: Chalice's own config lookup."""
    config = Config(
        chalice_stage=stage_name, function_name=function_name, config_from_disk=chalice_config()
    )
    path = CHALICE_DIR / (config.iam_policy_file or f"policy-{stage_name}.json")
    statements: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["Statement"]
    return statements


def all_statements(stage_name: str) -> list[dict[str, Any]]:
    out = []
    for access in policy.FUNCTIONS:
        out += attached_statements(stage_name, access.chalice_name)
        out += template.role_policy(access, stage(stage_name))["Statement"]
    return out


def connection_arn(stage_name: str, method: str) -> str:
    """A concrete @connections ARN of the stage's WebSocket API (any API id would do)."""
    api_stage = stage(stage_name).api_gateway_stage
    api = "arn:aws:execute-api:us-east-1:123456789012:abc123def4"
    return f"{api}/{api_stage}/{method}/@connections/Rk1xc2VNjMCFIA="


def test_policy_files_are_current() -> None:
    assert policy.main(["--check"]) == 0, "run: python -m deploy.policy"


@pytest.mark.parametrize("stage_name", stages())
@pytest.mark.parametrize("access", policy.FUNCTIONS, ids=lambda f: f.chalice_name)
def test_each_function_gets_its_own_generated_file(
    stage_name: str, access: policy.FunctionAccess
) -> None:
    s = stage(stage_name)
    config = Config(
        chalice_stage=stage_name,
        function_name=access.chalice_name,
        config_from_disk=chalice_config(),
    )
    assert config.iam_policy_file == policy.policy_file(stage_name, access)
    text = (CHALICE_DIR / config.iam_policy_file).read_text(encoding="utf-8")
    assert json.loads(text) == policy.function_policy(stage_name, access)
    if access.table_actions:
        assert f"table/{s.table_name}" in text
    if access.reads_secret:
        assert f"parameter{s.secret_parameter}" in text
    assert f"log-group:/aws/lambda/{s.app_name}-{stage_name}-{access.chalice_name}" in text
    others = [stage(o).table_name for o in stages() if o != stage_name]
    assert not any(other in text for other in others)


@pytest.mark.parametrize("stage_name", stages())
@pytest.mark.parametrize("access", policy.FUNCTIONS, ids=lambda f: f.chalice_name)
def test_connections_only_for_what_the_function_sends_on_its_own_stage(
    stage_name: str, access: policy.FunctionAccess
) -> None:
    statements = attached_statements(stage_name, access.chalice_name)
    action = "execute-api:ManageConnections"
    own = {m for m in METHODS if allowed(statements, action, connection_arn(stage_name, m))}
    assert own == set(access.connection_methods)
    for other in stages():
        if stage(other).api_gateway_stage == stage(stage_name).api_gateway_stage:
            continue
        reach = [m for m in METHODS if allowed(statements, action, connection_arn(other, m))]
        assert reach == [], f"{stage_name} {access.chalice_name} reaches {other}'s connections"


@pytest.mark.parametrize("stage_name", stages())
@pytest.mark.parametrize(
    ("function_name", "granted"),
    [("websocket_connect", set()), ("websocket_disconnect", {"execute-api:ManageConnections"})],
)
def test_connect_gets_no_execute_api_and_disconnect_only_manage_connections(
    stage_name: str, function_name: str, granted: set[str]
) -> None:
    # $disconnect posts presence leave events to the room (POST only, checked above).
    actions = {a for st in attached_statements(stage_name, function_name) for a in st["Action"]}
    assert {a for a in actions if a.startswith("execute-api:")} == granted


def test_stages_have_their_own_api_gateway_stage() -> None:
    # The chalice deploy grants tell stages apart by this path: it must differ.
    names = [stage(s).api_gateway_stage for s in stages()]
    assert len(set(names)) == len(names) >= 2, names
    assert policy.problems() == []


def test_check_reports_a_shared_stage_path_a_wrong_pointer_and_a_stray_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_stage = stage
    monkeypatch.setattr(
        policy, "stage", lambda name: dataclasses.replace(real_stage(name), api_gateway_stage="api")
    )
    monkeypatch.setattr(policy, "iam_policy_file", lambda s, f: f"policy-{s}.json")
    (tmp_path / "policy-old.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(policy, "CHALICE_DIR", tmp_path)
    found = "\n".join(policy.problems())
    assert "share api_gateway_stage 'api'" in found
    assert "uses policy-dev.json, not policy-dev-websocket_connect.json" in found
    assert "policy-old.json is not generated" in found


def test_each_stage_grants_only_its_own_continuation_queue() -> None:
    """Two stages in one account must not consume each other's jobs: each stage's queue has
    its own name, and its functions' files grant that queue only."""
    queues = {name: stage(name).continuation_queue for name in stages()}
    assert len(set(queues.values())) == len(queues) >= 2, queues
    for name in stages():
        for access in policy.FUNCTIONS:
            for st in attached_statements(name, access.chalice_name):
                if any(a.startswith("sqs:") for a in st["Action"]):
                    assert st["Resource"] == [f"arn:aws:sqs:*:*:{queues[name]}"], (name, st)


def test_check_reports_a_queue_shared_between_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    real_stage = stage

    def shared(name: str) -> Any:
        s = real_stage(name)
        env = {**s.environment, "CONTINUATION_QUEUE_NAME": "switchboard-continuation"}
        return dataclasses.replace(s, environment=env)

    monkeypatch.setattr(policy, "stage", shared)
    found = "\n".join(policy.problems())
    assert "share CONTINUATION_QUEUE_NAME 'switchboard-continuation'" in found


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
        "continue_fan_out",
        "push_notifier",
        *policy.AUTHORIZERS,
    }
    # The plain Lambdas (@app.lambda_function): the authorizers, and the push notifier (an
    # EventBridge rule's target).
    functions = {f.name for f in app_module.app.pure_lambda_functions}
    assert functions == {*policy.AUTHORIZERS, "push_notifier"}
    sqs = {s.name for s in app_module.app.event_sources if type(s).__name__ == "SQSEventConfig"}
    assert sqs == {"continue_fan_out"}


def test_deploy_md_states_the_generated_iam_summary() -> None:
    """DEPLOY.md's IAM summary is generated from FUNCTIONS: a grant added to the code and not
    to the doc (the message function's DELETE once) fails here."""
    text = policy.DEPLOY_DOC.read_text(encoding="utf-8")
    assert policy.SUMMARY_START + "\n" + policy.summary() + "\n" + policy.SUMMARY_END in text


def function_arn(stage_name: str, function: str) -> str:
    s = stage(stage_name)
    return f"arn:aws:lambda:us-east-1:123456789012:function:{s.app_name}-{stage_name}-{function}"


@pytest.mark.parametrize("stage_name", stages())
@pytest.mark.parametrize("access", policy.FUNCTIONS, ids=lambda f: f.chalice_name)
def test_only_connect_and_message_invoke_and_only_the_authorizers(
    stage_name: str, access: policy.FunctionAccess
) -> None:
    statements = attached_statements(stage_name, access.chalice_name)
    invoke = "lambda:InvokeFunction"
    reach = {
        name
        for name in (*policy.AUTHORIZERS, "websocket_message", "api_handler")
        if allowed(statements, invoke, function_arn(stage_name, name))
    }
    callers = {"websocket_connect", "websocket_message"}
    assert reach == (set(policy.AUTHORIZERS) if access.chalice_name in callers else set())
    for other in stages():
        if other != stage_name:
            assert not any(
                allowed(statements, invoke, function_arn(other, n)) for n in policy.AUTHORIZERS
            ), f"{stage_name} {access.chalice_name} may invoke {other}'s authorizer"


def test_an_authorizer_reads_no_secret_and_no_table() -> None:
    for name in policy.AUTHORIZERS:
        access = policy.function(name)
        for stage_name in stages():
            actions = {a for st in attached_statements(stage_name, name) for a in st["Action"]}
            assert actions == set(policy.LOG_ACTIONS) | {"logs:CreateLogGroup"}, name
        actions = {
            a
            for st in template.role_policy(access, stage("dev"))["Statement"]
            for a in st["Action"]
        }
        assert actions == set(policy.LOG_ACTIONS)


def test_check_reports_an_authorizer_name_chalice_deploy_would_not_find(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_stage = stage

    def wrong(name: str) -> Any:
        s = real_stage(name)
        env = {**s.environment, "AUTHORIZER_FUNCTIONS": '{"authorize_support": "other"}'}
        return dataclasses.replace(s, environment=env)

    monkeypatch.setattr(policy, "stage", wrong)
    found = "\n".join(policy.problems())
    assert (
        "AUTHORIZER_FUNCTIONS must map 'authorize_support' to 'switchboard-dev-authorize_support'"
        in found
    )
