"""The packaged CloudFormation (SAM) template: cfn-lint clean, and what a first deploy needs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from chalicelib.schema import load_schema
from deploy import template
from deploy.policy import FUNCTIONS
from deploy.project import chalice_config, stage, stages
from tests.deploy.conftest import Packager, load_template

FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]


def resources(tpl: dict[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] in types}


def policy_statements(tpl: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every IAM statement in the template, with the resource that holds it."""
    for rid, res in tpl["Resources"].items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for st in policy["PolicyDocument"]["Statement"]:
                    yield rid, st
        elif res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for st in props["PolicyDocument"]["Statement"]:
                yield rid, st
        elif res["Type"] == "AWS::Serverless::Function":
            assert "Policies" not in props, f"{rid}: SAM policies bypass the per-function roles"


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("stage_name", stages())
def test_packaged_template_passes_cfn_lint(packaged: Packager, stage_name: str) -> None:
    pkg = packaged(stage_name)
    matches = lint(
        pkg.template_path.read_text(encoding="utf-8"), config=ManualArgs(regions=LINT_REGIONS)
    )
    problems = [f"{m.rule.id} {m.message} at {'/'.join(map(str, m.path))}" for m in matches]
    assert problems == [], "\n".join(problems)


def test_websocket_api_routes_on_action_with_three_routes(packaged: Packager) -> None:
    tpl = load_template(packaged("dev"))
    (api,) = resources(tpl, "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert api["Properties"]["RouteSelectionExpression"] == "$request.body.action"
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]["Target"]
        for r in resources(tpl, "AWS::ApiGatewayV2::Route").values()
    }
    assert set(routes) == {"$connect", "$default", "$disconnect"}
    integrations = resources(tpl, "AWS::ApiGatewayV2::Integration")
    handler_of = {
        key: integrations[target["Fn::Join"][1][1]["Ref"]]["Properties"]["IntegrationUri"][
            "Fn::Sub"
        ][1]["WebsocketHandler"]["Ref"]
        for key, target in routes.items()
    }
    assert handler_of == {
        "$connect": "WebsocketConnect",
        "$default": "WebsocketMessage",
        "$disconnect": "WebsocketDisconnect",
    }
    (ws_stage,) = resources(tpl, "AWS::ApiGatewayV2::Stage").values()
    assert ws_stage["Properties"]["StageName"] == stage("dev").api_gateway_stage
    assert "wss://" in tpl["Outputs"]["WebsocketConnectEndpointURL"]["Value"]["Fn::Sub"]


def test_table_comes_from_the_schema(packaged: Packager) -> None:
    tpl = load_template(packaged("dev"))
    (table_id, table), *others = resources(tpl, "AWS::DynamoDB::Table").items()
    assert not others and table_id == template.TABLE_ID
    props = table["Properties"]
    schema = load_schema()
    assert props["KeySchema"] == schema["KeySchema"]
    assert props["AttributeDefinitions"] == schema["AttributeDefinitions"]
    assert props["GlobalSecondaryIndexes"] == schema["GlobalSecondaryIndexes"]
    assert [g["IndexName"] for g in props["GlobalSecondaryIndexes"]] == ["GSI1", "GSI2"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert "TableName" not in props  # named by the stack: two stacks never collide
    assert tpl["Outputs"]["ConnectionsTableName"]["Value"] == {"Ref": template.TABLE_ID}


def test_table_resource_refuses_schema_keys_it_cannot_map(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = load_schema()
    schema["SomethingNew"] = {}
    monkeypatch.setattr(template, "load_schema", lambda: schema)
    with pytest.raises(ValueError, match="SomethingNew"):
        template.table_resource()


@pytest.mark.parametrize("stage_name", stages())
def test_every_function_is_pinned_and_wired(packaged: Packager, stage_name: str) -> None:
    tpl = load_template(packaged(stage_name))
    functions = resources(tpl, *FUNCTION_TYPES)
    assert set(functions) == {f.logical_id for f in FUNCTIONS}
    for fid, fn in functions.items():
        props = fn["Properties"]
        assert props["Runtime"] in template.SUPPORTED_RUNTIMES, fid
        env = props["Environment"]["Variables"]
        assert env["CONNECTIONS_TABLE"] == {"Ref": template.TABLE_ID}, fid
        assert env["JWT_SECRET_PARAMETER"] == {"Ref": template.SECRET_PARAMETER_ID}, fid
        assert env["AUTH_MODE"] == "jwt", fid
        assert "JWT_SECRET" not in env, fid
        access = next(f for f in FUNCTIONS if f.logical_id == fid)
        assert props["Role"] == {"Fn::GetAtt": [access.role_id, "Arn"]}, fid
        assert props["LoggingConfig"]["LogGroup"] == {"Ref": f"{fid}LogGroup"}
    websocket_url = functions["APIHandler"]["Properties"]["Environment"]["Variables"][
        "WEBSOCKET_URL"
    ]["Fn::Sub"]
    assert websocket_url.startswith("wss://${WebsocketAPI}.execute-api.${AWS::Region}.")
    assert websocket_url.endswith(f"/{stage(stage_name).api_gateway_stage}")
    assert tpl["Parameters"][template.SECRET_PARAMETER_ID]["Default"] == (
        stage(stage_name).secret_parameter
    )


def test_every_function_runs_on_arm64(packaged: Packager) -> None:
    """The sizing model (docs/SCALE.md) picks arm64: the same pure-Python zip, a lower price."""
    functions = resources(load_template(packaged("dev")), *FUNCTION_TYPES)
    assert functions
    for fid, function in functions.items():
        assert function["Properties"].get("Architectures") == ["arm64"], fid


def test_fan_out_functions_get_memory_and_time(packaged: Packager) -> None:
    functions = resources(load_template(packaged("dev")), *FUNCTION_TYPES)
    for fid in ("WebsocketMessage", "APIHandler"):
        assert functions[fid]["Properties"]["MemorySize"] >= 1024, fid
        assert functions[fid]["Properties"]["Timeout"] >= 30, fid
    for fid in ("WebsocketConnect", "WebsocketDisconnect"):
        # One or two DynamoDB calls; the upgrade waits for $connect, so fail fast.
        assert functions[fid]["Properties"]["Timeout"] <= 29, fid


def test_secret_never_in_the_template(packaged: Packager) -> None:
    text = packaged("dev").template_path.read_text(encoding="utf-8")
    assert "resolve:ssm-secure" not in text  # not allowed in Lambda environment variables
    assert '"JWT_SECRET"' not in text
    assert "JWT_SECRET" not in json.dumps(chalice_config().get("environment_variables", {}))


def test_no_wildcard_actions_and_only_allow(packaged: Packager) -> None:
    tpl = load_template(packaged("dev"))
    seen = 0
    for rid, st in policy_statements(tpl):
        seen += 1
        assert st["Effect"] == "Allow", rid
        assert "NotAction" not in st and "NotResource" not in st, rid
        for action in as_list(st["Action"]):
            assert "*" not in action, f"{rid}: wildcard action {action}"
    assert seen >= 4 * 3


def test_every_role_is_a_least_privilege_role_of_ours(packaged: Packager) -> None:
    """Chalice's role per function carries the function's own policy, not the stage file."""
    tpl = load_template(packaged("dev"))
    roles = resources(tpl, "AWS::IAM::Role")
    assert set(roles) == {f.role_id for f in FUNCTIONS}
    merge = template.merge_template("dev")
    for access in FUNCTIONS:
        policies = roles[access.role_id]["Properties"]["Policies"]
        assert policies == merge["Resources"][access.role_id]["Properties"]["Policies"]


def test_only_the_senders_may_use_connections_and_only_this_api(packaged: Packager) -> None:
    tpl = load_template(packaged("dev"))
    grants: dict[str, list[str]] = {}
    for rid, st in policy_statements(tpl):
        if "execute-api:ManageConnections" in as_list(st["Action"]):
            for resource in as_list(st["Resource"]):
                arn = resource["Fn::Sub"]
                assert arn.startswith(
                    "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                    "${WebsocketAPI}/api/"
                ), arn
                grants.setdefault(rid, []).append(arn.split("/")[2])
    assert grants == {
        "WebsocketMessageRole": ["POST", "DELETE"],  # DELETE: an expired token's socket
        "WebsocketDisconnectRole": ["POST"],  # presence: the leave event
        "ApiHandlerRole": ["POST", "DELETE"],
        "ContinueFanOutRole": ["POST"],  # the continuation worker posts the rest
    }


def test_table_access_is_on_this_stacks_table(packaged: Packager) -> None:
    tpl = load_template(packaged("dev"))
    for rid, st in policy_statements(tpl):
        actions = as_list(st["Action"])
        if any(a.startswith("dynamodb:") for a in actions):
            for resource in as_list(st["Resource"]):
                text = json.dumps(resource)
                assert template.TABLE_ID in text and "*" not in text, (rid, resource)
        if any(a.startswith("logs:") for a in actions):
            for resource in as_list(st["Resource"]):
                assert resource["Fn::GetAtt"][0].endswith("LogGroup"), (rid, resource)


def test_deployment_zip_is_small_and_complete(packaged: Packager) -> None:
    pkg = packaged("dev")
    names = set(pkg.zip_names())
    assert pkg.zip_bytes < 1_000_000
    assert {"app.py", "chalicelib/schema.json", "chalicelib/schema.py", "chalice/app.py"} <= names
    assert "chalicelib/openapi.json" in names  # served at GET /openapi.json
    assert "jwt/__init__.py" in names  # PyJWT, the one runtime requirement
    assert not any(n.startswith(("boto3/", "botocore/")) for n in names)  # the runtime has them
    assert not any(n.startswith(("tests/", "local_gateway/", "deploy/", "bench/")) for n in names)
    assert not any(n.endswith((".so", ".pyd")) for n in names)


@pytest.mark.parametrize("stage_name", stages())
def test_both_api_stages_are_throttled_from_stack_parameters(
    packaged: Packager, stage_name: str
) -> None:
    tpl = load_template(packaged(stage_name))
    websocket, rest = template.THROTTLING

    def limits(settings: dict[str, Any], throttle: template.Throttle) -> tuple[int, int]:
        assert settings["ThrottlingRateLimit"] == {"Ref": throttle.rate_parameter}
        assert settings["ThrottlingBurstLimit"] == {"Ref": throttle.burst_parameter}
        parameters = tpl["Parameters"]
        return (
            parameters[throttle.rate_parameter]["Default"],
            parameters[throttle.burst_parameter]["Default"],
        )

    (ws_stage,) = resources(tpl, "AWS::ApiGatewayV2::Stage").values()
    assert limits(ws_stage["Properties"]["DefaultRouteSettings"], websocket) == (500, 1000)
    (rest_api,) = resources(tpl, "AWS::Serverless::Api").values()
    (everything,) = rest_api["Properties"]["MethodSettings"]
    assert (everything["ResourcePath"], everything["HttpMethod"]) == ("/*", "*")
    assert limits(everything, rest) == (50, 100)
    # Below the account's shared API Gateway quota (10,000 rps, burst 5,000).
    for throttle in template.THROTTLING:
        assert 0 < throttle.rate <= throttle.burst <= 5000


@pytest.mark.parametrize("stage_name", stages())
def test_reserved_concurrency_is_an_opt_in_parameter(packaged: Packager, stage_name: str) -> None:
    """A reservation rolls the whole stack back on accounts whose concurrency limit is 10 or
    50 (Lambda keeps 100 unreserved): off unless the deployer asks for it."""
    tpl = load_template(packaged(stage_name))
    config = chalice_config()
    for scope in (config, *config["stages"].values()):
        for name, fn in scope.get("lambda_functions", {}).items():
            assert "reserved_concurrency" not in fn, f"{name}: chalice deploy would reserve"
    parameter = tpl["Parameters"][template.RESERVED_CONCURRENCY_PARAMETER]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 0, 0)
    functions = resources(tpl, *FUNCTION_TYPES)
    reserved = functions["WebsocketMessage"]["Properties"]["ReservedConcurrentExecutions"]
    # 0 would throttle every invocation: no reservation is no property at all.
    assert reserved == {
        "Fn::If": [
            template.RESERVES_CONCURRENCY,
            {"Ref": template.RESERVED_CONCURRENCY_PARAMETER},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert tpl["Conditions"][template.RESERVES_CONCURRENCY] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": template.RESERVED_CONCURRENCY_PARAMETER}, 0]}]
    }
    for fid, fn in functions.items():
        if fid != "WebsocketMessage":
            assert "ReservedConcurrentExecutions" not in fn["Properties"], fid


def test_the_table_outlives_the_stack(packaged: Packager) -> None:
    """It holds the message log and the stream counters: deleting or replacing the stack must
    not delete it ("DeletionPolicy attribute", CloudFormation user guide)."""
    table = load_template(packaged("dev"))["Resources"][template.TABLE_ID]
    assert (table["DeletionPolicy"], table["UpdateReplacePolicy"]) == ("Retain", "Retain")


def test_every_alarm_notifies_the_topic_parameter(packaged: Packager) -> None:
    tpl = load_template(packaged("dev"))
    alarms = resources(tpl, "AWS::CloudWatch::Alarm")
    assert {"FanoutFailedAlarm", "FanoutThrottledAlarm", "ContinuationDeadLetterAlarm"} <= set(
        alarms
    )
    topic = {
        "Fn::If": [
            template.HAS_ALARM_TOPIC,
            [{"Ref": template.ALARM_TOPIC_PARAMETER}],
            {"Ref": "AWS::NoValue"},
        ]
    }
    for aid, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == topic, aid
    assert tpl["Parameters"][template.ALARM_TOPIC_PARAMETER]["Default"] == ""
    dlq = alarms["ContinuationDeadLetterAlarm"]["Properties"]
    assert (dlq["Namespace"], dlq["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": [template.DLQ_ID, "QueueName"]}}
    ]


def test_access_logs_are_opt_in_for_both_apis(packaged: Packager) -> None:
    """Off by default: they need API Gateway's account-wide CloudWatch Logs role, which this
    stack never sets (docs/DEPLOY.md)."""
    tpl = load_template(packaged("dev"))
    assert tpl["Parameters"][template.ACCESS_LOGS_PARAMETER]["Default"] == "false"
    assert not resources(tpl, "AWS::ApiGateway::Account"), "the account-wide role is the user's"
    groups = {template.WEBSOCKET_ACCESS_LOG_ID, template.REST_ACCESS_LOG_ID}
    for gid in groups:
        assert tpl["Resources"][gid]["Condition"] == template.ACCESS_LOGS_ON
    (ws_stage,) = resources(tpl, "AWS::ApiGatewayV2::Stage").values()
    (rest_api,) = resources(tpl, "AWS::Serverless::Api").values()
    for setting, gid in (
        (ws_stage["Properties"]["AccessLogSettings"], template.WEBSOCKET_ACCESS_LOG_ID),
        (rest_api["Properties"]["AccessLogSetting"], template.REST_ACCESS_LOG_ID),
    ):
        condition, on, off = setting["Fn::If"]
        assert (condition, off) == (template.ACCESS_LOGS_ON, {"Ref": "AWS::NoValue"})
        assert on["DestinationArn"] == {"Fn::GetAtt": [gid, "Arn"]}
        # No query string, no header: ?token= and Authorization never reach the logs.
        assert "querystring" not in on["Format"].lower() and "header" not in on["Format"].lower()
        json.loads(on["Format"])


# Properties that give a resource a name of its own: two stacks (stages) in one account and
# region must not collide on one, nor use the same queue or table.
_NAME_PROPERTIES = ("TableName", "QueueName", "TopicName", "LogGroupName", "RoleName",
                    "FunctionName", "AlarmName", "BucketName")  # fmt: skip


@pytest.mark.parametrize("stage_name", stages())
def test_nothing_is_shared_between_stages(packaged: Packager, stage_name: str) -> None:
    tpl = load_template(packaged(stage_name))
    for rid, res in tpl["Resources"].items():
        if res["Type"] == "AWS::Lambda::Permission":
            continue  # FunctionName there is a reference to this stack's function
        for prop in _NAME_PROPERTIES:
            value = res.get("Properties", {}).get(prop)
            if value is not None:
                assert "${AWS::StackName}" in json.dumps(value), f"{rid}.{prop} = {value!r}"
    functions = resources(tpl, *FUNCTION_TYPES)
    for fid, fn in functions.items():
        env = fn["Properties"]["Environment"]["Variables"]
        # config.json's chalice deploy queue name is replaced by this stack's queue.
        assert env["CONTINUATION_QUEUE_NAME"] == {"Fn::GetAtt": [template.QUEUE_ID, "QueueName"]}, (
            fid
        )
    source = functions[template.WORKER_ID]["Properties"]["Events"][template.WORKER_EVENT_ID]
    assert source["Properties"]["Queue"] == {"Fn::Sub": f"${{{template.QUEUE_ID}.Arn}}"}


def test_worker_gets_batches_with_partial_failures(packaged: Packager) -> None:
    functions = resources(load_template(packaged("dev")), *FUNCTION_TYPES)
    worker = functions[template.WORKER_ID]["Properties"]
    props = worker["Events"][template.WORKER_EVENT_ID]["Properties"]
    assert props["BatchSize"] == template.WORKER_BATCH_SIZE
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert worker["Environment"]["Variables"]["CONTINUATION_PARTIAL_BATCH"] == "true"
    queue = load_template(packaged("dev"))["Resources"][template.QUEUE_ID]["Properties"]
    # At least six times the function's timeout ("Configuring a queue to use with Lambda").
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["RedrivePolicy"]["maxReceiveCount"] == template.MAX_RECEIVES


def test_the_stack_names_its_authorizers_to_the_functions_that_use_them(
    packaged: Packager,
) -> None:
    from chalicelib.authorizer import function_names
    from chalicelib.namespaces import load
    from deploy.policy import AUTHORIZERS, function

    functions = resources(load_template(packaged("dev")), *FUNCTION_TYPES)
    for fid, fn in functions.items():
        value = fn["Properties"]["Environment"]["Variables"]["AUTHORIZER_FUNCTIONS"]
        if fid in {function(name).logical_id for name in AUTHORIZERS}:
            assert value == "{}"  # a Ref to itself would be a cycle; it reads no settings
            continue
        # CloudFormation names the functions: a Ref per authorizer, never config.json's
        # chalice-deploy name (which Chalice copied into every function's environment).
        text = value["Fn::Sub"]
        names = json.loads(text)
        assert names == {n: "${" + function(n).logical_id + "}" for n in AUTHORIZERS}, fid
        assert function_names(text, load(None).authorizers()) == names


def test_events_go_to_the_stacks_bus_off_by_default_and_only_publishers_may_put() -> None:
    from deploy import template

    merged = template.merge_template("dev")
    resources = merged["Resources"]
    assert resources[template.EVENT_BUS_ID]["Type"] == "AWS::Events::EventBus"
    assert merged["Parameters"][template.EVENTS_PARAMETER]["Default"] == "false"
    for access in FUNCTIONS:
        variables = resources[access.logical_id]["Properties"]["Environment"]["Variables"]
        grants = [
            st
            for st in resources[access.role_id]["Properties"]["Policies"][0]["PolicyDocument"][
                "Statement"
            ]
            if any(a.startswith("events:") for a in st["Action"])
        ]
        if access.publishes_events:
            assert variables["EVENT_BUS_NAME"] == {
                "Fn::If": [template.EVENTS_CONDITION, {"Ref": template.EVENT_BUS_ID}, ""]
            }
            assert grants == [
                {
                    "Sid": "EventBus",
                    "Effect": "Allow",
                    "Action": ["events:PutEvents"],
                    "Resource": [{"Fn::GetAtt": [template.EVENT_BUS_ID, "Arn"]}],
                }
            ]
        else:
            assert "EVENT_BUS_NAME" not in variables and grants == []


def test_the_push_rule_targets_the_notifier_with_a_dead_letter_queue() -> None:
    from deploy import template

    resources = template.merge_template("dev")["Resources"]
    [rule] = template.rules()
    props = resources["PushUndeliveredRule"]["Properties"]
    assert (
        props["EventPattern"]
        == rule["pattern"]
        == {
            "source": ["switchboard"],
            "detail-type": ["Message Undelivered"],
        }
    )
    assert props["EventBusName"] == {"Ref": template.EVENT_BUS_ID}
    [target] = props["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["PushNotifier", "Arn"]}
    assert target["DeadLetterConfig"] == {
        "Arn": {"Fn::GetAtt": ["PushUndeliveredDeadLetterQueue", "Arn"]}
    }
    permission = resources["PushUndeliveredRulePermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["PushUndeliveredRule", "Arn"]}
    [statement] = resources["PushUndeliveredDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["PushUndeliveredRule", "Arn"]}}
    }
