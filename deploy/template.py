"""The merge template for ``chalice package --merge-template``: what Chalice does not generate.

Chalice's CloudFormation output (SAM) has the WebSocket API, its three routes, the REST API,
four functions (``APIHandler``, ``WebsocketConnect``, ``WebsocketMessage``,
``WebsocketDisconnect``) and a role per function (``<Function>Role``, since
``autogen_policy`` is false) whose policy is ``.chalice/policy-<stage>.json``. Chalice merges
this template into it key by key; lists are replaced whole. It adds:

- ``ConnectionsTable`` built from chalicelib/schema.json (the table's one definition):
  on-demand, TTL on ``ttl``, the indexes, point-in-time recovery;
- for every function: a supported runtime (Chalice copies the local Python, and python3.11
  functions can no longer be created), ``CONNECTIONS_TABLE = !Ref ConnectionsTable``,
  ``JWT_SECRET_PARAMETER = !Ref JwtSecretParameterName``, and a log group with a retention;
  the REST handler also gets ``WEBSOCKET_URL`` (this stack's wss:// URL, for the demo page);
- for every role: the function's own least-privilege policy (``deploy/policy.py``), on this
  stack's table, this stack's WebSocket API ``@connections`` and this function's log group;
- throttling on both API stages (``WebsocketAPIStage`` default route settings, ``RestAPI``
  method settings), from stack parameters (``THROTTLING`` has the defaults), so that one
  tenant's flood is refused by API Gateway before it reaches Lambda;
- the continuation queue, its dead-letter queue and the worker's mapping (5 jobs per batch,
  ``ReportBatchItemFailures``), alarms that notify the ``AlarmTopicArn`` topic, and opt-in
  parameters: ``MessageReservedConcurrency`` (0 = none) and ``AccessLogs`` (both APIs);
- ``DeletionPolicy: Retain`` on the table: it holds the message log, not only connections.

- every function on ``arm64`` (``ARCHITECTURE``): docs/SCALE.md, "Lambda sizing", has the
  model that chose it and the memory sizes in .chalice/config.json;

Nothing gets a fixed name: two stacks (stages) in one account share nothing. Memory and
timeout live in .chalice/config.json (``lambda_functions``), so that ``chalice deploy`` gets
them too; Chalice writes them into the template as ``MemorySize`` and ``Timeout``. Stage
throttling, alarms and access logs have no ``chalice deploy`` setting.

    python -m deploy.template --stage dev -o build/merge-template-dev.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib.schema import load_schema
from deploy.policy import AUTHORIZERS, FUNCTIONS, Arns, FunctionAccess, document, statements
from deploy.policy import function as function_access
from deploy.project import Stage, index_names, stage, stages

RUNTIME = "python3.13"
# Lambda's arm64 (Graviton) price per GB-second is 20% under x86_64's (bench/cost.py cites it).
ARCHITECTURE = "arm64"
SUPPORTED_RUNTIMES = ("python3.12", "python3.13")
LOG_RETENTION_DAYS = 30
TABLE_ID = "ConnectionsTable"
WEBSOCKET_API_ID = "WebsocketAPI"  # Chalice's logical id for the WebSocket API
WEBSOCKET_STAGE_ID = "WebsocketAPIStage"  # ... for its AWS::ApiGatewayV2::Stage
REST_API_ID = "RestAPI"  # ... for the REST API (AWS::Serverless::Api)
SECRET_PARAMETER_ID = "JwtSecretParameterName"
QUEUE_ID = "ContinuationQueue"  # fan-out continuations (chalicelib/continuation.py)
DLQ_ID = "ContinuationDeadLetterQueue"
WORKER_ID = "ContinueFanOut"  # app.py's on_sqs_message function
WORKER_EVENT_ID = "ContinueFanOutSqsEventSource"  # Chalice's name for its SQS event
# SQS's advice: a visibility timeout of at least six times the function's timeout (60 s), so a
# job being worked on is not handed to a second worker ("Configuring a queue to use with
# Lambda", Lambda developer guide).
QUEUE_VISIBILITY_SECONDS = 360
MAX_RECEIVES = 5  # then the job goes to the dead-letter queue
WORKER_BATCH_SIZE = 5  # jobs per worker invocation (app.py subscribes with 1 for chalice deploy)
DLQ_RETENTION_SECONDS = 1209600  # 14 days, SQS's maximum: time to look at a poisoned job

# Opt-in parameters and the conditions they drive.
ALARM_TOPIC_PARAMETER = "AlarmTopicArn"
HAS_ALARM_TOPIC = "HasAlarmTopic"
RESERVED_CONCURRENCY_PARAMETER = "MessageReservedConcurrency"
RESERVES_CONCURRENCY = "ReservesMessageConcurrency"
ACCESS_LOGS_PARAMETER = "AccessLogs"
ACCESS_LOGS_ON = "AccessLogsOn"
WEBSOCKET_ACCESS_LOG_ID = "WebsocketAccessLogGroup"
REST_ACCESS_LOG_ID = "RestAccessLogGroup"
# Access log lines: who called what and how it ended. No query string and no header, so the
# WebSocket ?token= and the REST Authorization header never reach the logs. Variables:
# "Customizing HTTP and WebSocket API access logs" / "Variables for access logging for API
# Gateway" (REST), API Gateway developer guide.
WEBSOCKET_ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTimeEpoch",
        "eventType": "$context.eventType",
        "routeKey": "$context.routeKey",
        "connectionId": "$context.connectionId",
        "status": "$context.status",
        "integrationLatency": "$context.integrationLatency",
        "error": "$context.error.message",
    },
    separators=(",", ":"),
)
REST_ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "ip": "$context.identity.sourceIp",
        "requestTime": "$context.requestTimeEpoch",
        "httpMethod": "$context.httpMethod",
        "resourcePath": "$context.resourcePath",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "integrationLatency": "$context.integrationLatency",
    },
    separators=(",", ":"),
)

# Back-end events (chalicelib/bus.py, docs/EVENTS.md): the stack's own bus, off unless the
# EnableEvents parameter says "true" (then the publishers get EVENT_BUS_NAME); the rules of
# deploy/event_rules.json, each targeting an app function with a dead-letter queue.
EVENT_BUS_ID = "EventBus"
EVENTS_PARAMETER = "EnableEvents"
EVENTS_CONDITION = "EventsOn"
RULES_PATH = Path(__file__).with_name("event_rules.json")
# Our push platforms -> the stack parameter naming its SNS platform application.
PUSH_PARAMETERS = {
    "PUSH_APNS_APPLICATION_ARN": "PushApnsApplicationArn",
    "PUSH_APNS_SANDBOX_APPLICATION_ARN": "PushApnsSandboxApplicationArn",
    "PUSH_FCM_APPLICATION_ARN": "PushFcmApplicationArn",
}
# EventBridge retries a target for up to 24 h and 185 attempts by default ("Event retry
# policy and using dead-letter queues", EventBridge user guide): a notification a day late is
# noise, so give up after an hour and keep the event in the DLQ.
RULE_MAX_EVENT_AGE_SECONDS = 3600


@dataclass(frozen=True)
class Throttle:
    """Stage-wide API Gateway throttling, as two stack parameters with defaults."""

    api: str  # "Websocket" or "Rest": the parameters are <api>ThrottlingRateLimit / ...BurstLimit
    rate: int  # steady requests (WebSocket: messages and connects) per second
    burst: int  # token bucket size

    @property
    def rate_parameter(self) -> str:
        return f"{self.api}ThrottlingRateLimit"

    @property
    def burst_parameter(self) -> str:
        return f"{self.api}ThrottlingBurstLimit"

    def parameters(self) -> dict[str, Any]:
        return {
            self.rate_parameter: {
                "Type": "Number",
                "Default": self.rate,
                "MinValue": 1,
                "Description": f"{self.api} API stage: steady requests per second.",
            },
            self.burst_parameter: {
                "Type": "Number",
                "Default": self.burst,
                "MinValue": 1,
                "Description": f"{self.api} API stage: burst (token bucket size).",
            },
        }

    def settings(self) -> dict[str, Any]:
        return {
            "ThrottlingRateLimit": {"Ref": self.rate_parameter},
            "ThrottlingBurstLimit": {"Ref": self.burst_parameter},
        }


# Below the account's API Gateway quota (10,000 rps, burst 5,000, shared by every API in
# the region), so one stage under a flood leaves room for the others. The REST API is the
# admin push API: a handful of callers.
THROTTLING = (Throttle("Websocket", rate=500, burst=1000), Throttle("Rest", rate=50, burst=100))

# schema.json keys that CloudFormation's AWS::DynamoDB::Table takes as they are.
_TABLE_KEYS = (
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
    "BillingMode",
    "ProvisionedThroughput",
    "StreamSpecification",
)


def table_resource() -> dict[str, Any]:
    """AWS::DynamoDB::Table from the schema; an unknown schema key is an error, not a drop."""
    schema = load_schema()
    ttl = schema.pop("TimeToLiveAttribute", None)
    unknown = sorted(set(schema) - set(_TABLE_KEYS))
    if unknown:
        raise ValueError(f"schema.json keys the template does not map: {', '.join(unknown)}")
    properties: dict[str, Any] = {k: schema[k] for k in _TABLE_KEYS if k in schema}
    properties.setdefault("BillingMode", "PAY_PER_REQUEST")
    if ttl:
        properties["TimeToLiveSpecification"] = {"AttributeName": ttl, "Enabled": True}
    properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
    return {
        "Type": "AWS::DynamoDB::Table",
        # The table holds the message log and the stream counters, not only connections: a
        # stack deletion (or a replacement) must not take them. docs/DEPLOY.md says how to
        # remove it on purpose ("DeletionPolicy attribute", CloudFormation user guide).
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": properties,
    }


def log_group_id(access: FunctionAccess) -> str:
    return f"{access.logical_id}LogGroup"


def template_arns(access: FunctionAccess, api_stage: str) -> Arns:
    """ARNs of this stack's resources, as CloudFormation intrinsics."""
    return Arns(
        table={"Fn::GetAtt": [TABLE_ID, "Arn"]},
        index=lambda name: {"Fn::Sub": f"${{{TABLE_ID}.Arn}}/index/{name}"},
        connections=lambda method: {
            "Fn::Sub": (
                "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
                f"${{{WEBSOCKET_API_ID}}}/{api_stage}/{method}/@connections/*"
            )
        },
        secret={
            "Fn::Sub": (
                "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
                f"parameter${{{SECRET_PARAMETER_ID}}}"
            )
        },
        # The group is a resource of the stack: no logs:CreateLogGroup for the function.
        log_groups=[],
        log_streams=[{"Fn::GetAtt": [log_group_id(access), "Arn"]}],
        queue={"Fn::GetAtt": [QUEUE_ID, "Arn"]},
        function=lambda name: {"Fn::GetAtt": [function_access(name).logical_id, "Arn"]},
        event_bus={"Fn::GetAtt": [EVENT_BUS_ID, "Arn"]},
        push_applications={
            "Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:app/*"
        },
        push_endpoints={
            "Fn::Sub": "arn:${AWS::Partition}:sns:${AWS::Region}:${AWS::AccountId}:endpoint/*"
        },
    )


EVENT_SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "docs" / "events"
SCHEMA_REGISTRY_ID = "EventSchemaRegistry"


def event_schemas() -> dict[str, dict[str, Any]]:
    """The EventBridge schema registry export of docs/events/*.schema.json: per detail-type,
    the whole event (``source``, ``detail-type``, ``detail``) as JSON Schema draft 4, the
    registry's ``JSONSchemaDraft4`` type ("Schema registries in Amazon EventBridge", user
    guide). The documents in docs/ are draft 2020-12: ``const`` becomes a one-value ``enum``
    and ``$schema``/``$id`` are dropped (draft 4 has no ``const``, and ``id`` is its own)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(EVENT_SCHEMAS_DIR.glob("*.schema.json")):
        detail = json.loads(path.read_text(encoding="utf-8"))
        detail_type = str(detail["title"])
        out[detail_type] = {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "title": detail_type,
            "description": detail["description"],
            "type": "object",
            "required": ["source", "detail-type", "detail"],
            "properties": {
                "source": {"type": "string", "enum": ["switchboard"]},
                "detail-type": {"type": "string", "enum": [detail_type]},
                "detail": _draft4({k: v for k, v in detail.items() if k not in ("$schema", "$id")}),
            },
        }
    return out


def _draft4(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _draft4(v) for k, v in node.items() if k != "const"}
        if "const" in node:
            out["enum"] = [node["const"]]
        return out
    if isinstance(node, list):
        return [_draft4(v) for v in node]
    return node


def schema_registry_resources() -> dict[str, Any]:
    """A schema registry of the stack with one schema per detail-type (EventBridge's schema
    discovery, code bindings and console show them)."""
    resources: dict[str, Any] = {
        SCHEMA_REGISTRY_ID: {
            "Type": "AWS::EventSchemas::Registry",
            "Properties": {
                "RegistryName": {"Fn::Sub": "${AWS::StackName}-events"},
                "Description": "switchboard's back-end events (docs/EVENTS.md)",
            },
        }
    }
    for detail_type, schema in event_schemas().items():
        resources[f"{_camel(detail_type.replace(' ', '-'))}EventSchema"] = {
            "Type": "AWS::EventSchemas::Schema",
            "Properties": {
                "RegistryName": {"Fn::GetAtt": [SCHEMA_REGISTRY_ID, "RegistryName"]},
                "SchemaName": f"switchboard@{detail_type.replace(' ', '')}",
                "Type": "JSONSchemaDraft4",
                "Content": json.dumps(schema, separators=(",", ":")),
                "Description": schema["description"][:256],
            },
        }
    return resources


def rules() -> list[dict[str, Any]]:
    """deploy/event_rules.json's rules (name, description, pattern, function)."""
    found: list[dict[str, Any]] = json.loads(RULES_PATH.read_text(encoding="utf-8"))["rules"]
    return found


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace("_", "-").split("-"))


def event_resources() -> dict[str, Any]:
    """The bus, and per rule: the rule, its target's dead-letter queue (with the policy that
    lets EventBridge send to it) and the permission for EventBridge to invoke the function."""
    resources: dict[str, Any] = {
        EVENT_BUS_ID: {
            "Type": "AWS::Events::EventBus",
            "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}-events"}},
        }
    }
    for rule in rules():
        rid = f"{_camel(rule['name'])}Rule"
        dlq = f"{_camel(rule['name'])}DeadLetterQueue"
        target = function_access(rule["function"]).logical_id
        rule_arn = {"Fn::GetAtt": [rid, "Arn"]}
        resources[dlq] = {
            "Type": "AWS::SQS::Queue",
            "Properties": {"MessageRetentionPeriod": 1209600, "SqsManagedSseEnabled": True},
        }
        resources[f"{dlq}Policy"] = {
            "Type": "AWS::SQS::QueuePolicy",
            "Properties": {
                "Queues": [{"Ref": dlq}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            # "Granting permissions to the dead-letter queue", EventBridge
                            # user guide: the rule may send, nothing else.
                            "Sid": "RuleDeadLetters",
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sqs:SendMessage",
                            "Resource": {"Fn::GetAtt": [dlq, "Arn"]},
                            "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
                        }
                    ],
                },
            },
        }
        resources[rid] = {
            "Type": "AWS::Events::Rule",
            "Properties": {
                "Description": rule["description"],
                "EventBusName": {"Ref": EVENT_BUS_ID},
                "EventPattern": rule["pattern"],
                "State": "ENABLED",
                "Targets": [
                    {
                        "Id": rule["function"],
                        "Arn": {"Fn::GetAtt": [target, "Arn"]},
                        "DeadLetterConfig": {"Arn": {"Fn::GetAtt": [dlq, "Arn"]}},
                        "RetryPolicy": {
                            "MaximumEventAgeInSeconds": RULE_MAX_EVENT_AGE_SECONDS,
                            "MaximumRetryAttempts": 185,
                        },
                    }
                ],
            },
        }
        resources[f"{rid}Permission"] = {
            "Type": "AWS::Lambda::Permission",
            "Properties": {
                "Action": "lambda:InvokeFunction",
                "FunctionName": {"Ref": target},
                "Principal": "events.amazonaws.com",
                "SourceArn": rule_arn,
            },
        }
    return resources


def authorizer_functions(access: FunctionAccess) -> Any:
    """AUTHORIZER_FUNCTIONS for one function: every authorizer's name in this stack (a Ref,
    since CloudFormation names the functions), replacing the ``chalice deploy`` names
    config.json gives. An authorizer gets none: a Ref to itself would be a cycle, and it
    never builds the settings that read this."""
    if access.chalice_name in AUTHORIZERS:
        return "{}"
    entries = ",".join(
        f'"{name}":"${{{function_access(name).logical_id}}}"' for name in AUTHORIZERS
    )
    return {"Fn::Sub": "{" + entries + "}"}


def continuation_resources() -> dict[str, Any]:
    """The continuation queue, its dead-letter queue, and alarms on the fan-out metrics."""
    resources: dict[str, Any] = {
        DLQ_ID: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        },
        QUEUE_ID: {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "VisibilityTimeout": QUEUE_VISIBILITY_SECONDS,
                "SqsManagedSseEnabled": True,
                "RedrivePolicy": {
                    "deadLetterTargetArn": {"Fn::GetAtt": [DLQ_ID, "Arn"]},
                    "maxReceiveCount": MAX_RECEIVES,
                },
            },
        },
        # Chalice subscribes the worker to the queue by name, one job per batch (what
        # ``chalice deploy`` needs); this stack's queue instead, 5 jobs per batch with partial
        # batch responses (the handler returns batchItemFailures; CONTINUATION_PARTIAL_BATCH
        # tells it the mapping reads them).
        WORKER_ID: {
            "Properties": {
                "Events": {
                    WORKER_EVENT_ID: {
                        "Properties": {
                            # Fn::Sub, the key Chalice's own value uses: the merge
                            # replaces it (another intrinsic would sit beside it).
                            "Queue": {"Fn::Sub": f"${{{QUEUE_ID}.Arn}}"},
                            "BatchSize": WORKER_BATCH_SIZE,
                            "FunctionResponseTypes": ["ReportBatchItemFailures"],
                        }
                    }
                }
            }
        },
    }
    # The EMF line of every fan-out (chalicelib/metrics.py) is the metric source.
    for metric in ("Failed", "Throttled"):
        resources[f"Fanout{metric}Alarm"] = alarm(
            {
                "AlarmDescription": f"Fan-out recipients {metric.lower()} (EMF, any scope)",
                "Namespace": "Switchboard",
                "MetricName": metric,  # the EMF line's dimensionless set: every scope
                "Statistic": "Sum",
            }
        )
    # A job on the dead-letter queue is a fan-out some recipients never got.
    resources["ContinuationDeadLetterAlarm"] = alarm(
        {
            "AlarmDescription": "Continuation jobs on the dead-letter queue (failed 5 times)",
            "Namespace": "AWS/SQS",
            "MetricName": "ApproximateNumberOfMessagesVisible",
            "Dimensions": [{"Name": "QueueName", "Value": {"Fn::GetAtt": [DLQ_ID, "QueueName"]}}],
            "Statistic": "Maximum",
        }
    )
    return resources


def alarm(properties: dict[str, Any]) -> dict[str, Any]:
    """A CloudWatch alarm on "more than 0 in 5 minutes" that notifies the AlarmTopicArn
    parameter's SNS topic, when one is given (an alarm with no action notifies nobody)."""
    topic = {"Fn::If": [HAS_ALARM_TOPIC, [{"Ref": ALARM_TOPIC_PARAMETER}], {"Ref": "AWS::NoValue"}]}
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            **properties,
            "Period": 300,
            "EvaluationPeriods": 1,
            "Threshold": 0,
            "ComparisonOperator": "GreaterThanThreshold",
            "TreatMissingData": "notBreaching",
            "AlarmActions": topic,
            "OKActions": topic,
        },
    }


def access_log_resources() -> dict[str, Any]:
    """Log groups for both APIs' access logs, made only when the AccessLogs parameter is true."""
    return {
        rid: {
            "Type": "AWS::Logs::LogGroup",
            "Condition": ACCESS_LOGS_ON,
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {"RetentionInDays": LOG_RETENTION_DAYS},
        }
        for rid in (WEBSOCKET_ACCESS_LOG_ID, REST_ACCESS_LOG_ID)
    }


def _when_access_logs(value: dict[str, Any]) -> dict[str, Any]:
    return {"Fn::If": [ACCESS_LOGS_ON, value, {"Ref": "AWS::NoValue"}]}


def opt_in_parameters() -> dict[str, Any]:
    return {
        ALARM_TOPIC_PARAMETER: {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^(arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+)?$",
            "Description": (
                "ARN of an SNS topic the alarms notify (fan-out failures and throttling, jobs "
                "on the dead-letter queue). Empty: the alarms change state but notify nobody."
            ),
        },
        RESERVED_CONCURRENCY_PARAMETER: {
            "Type": "Number",
            "Default": 0,
            "MinValue": 0,
            "Description": (
                "Reserved concurrency of the WebSocket message function; 0 = none (the "
                "default). Reserving caps the function and guarantees it that many; the "
                "account must keep 100 unreserved, so new accounts (limit 10 or 50) refuse "
                "any reservation. See docs/DEPLOY.md, Sizing."
            ),
        },
        ACCESS_LOGS_PARAMETER: {
            "Type": "String",
            "Default": "false",
            "AllowedValues": ["false", "true"],
            "Description": (
                "Access logs for both APIs. Needs API Gateway's account-wide CloudWatch Logs "
                "role in this region first (docs/DEPLOY.md); this stack never sets it."
            ),
        },
    }


def conditions() -> dict[str, Any]:
    return {
        HAS_ALARM_TOPIC: {"Fn::Not": [{"Fn::Equals": [{"Ref": ALARM_TOPIC_PARAMETER}, ""]}]},
        RESERVES_CONCURRENCY: {
            "Fn::Not": [{"Fn::Equals": [{"Ref": RESERVED_CONCURRENCY_PARAMETER}, 0]}]
        },
        ACCESS_LOGS_ON: {"Fn::Equals": [{"Ref": ACCESS_LOGS_PARAMETER}, "true"]},
        EVENTS_CONDITION: {"Fn::Equals": [{"Ref": EVENTS_PARAMETER}, "true"]},
    }


def events_parameters() -> dict[str, Any]:
    """Back-end events on or off (off by default), and the push notifier's applications."""
    parameters: dict[str, Any] = {
        EVENTS_PARAMETER: {
            "Type": "String",
            "Default": "false",
            "AllowedValues": ["true", "false"],
            "Description": (
                "Publish back-end events (connections, presence, undelivered messages) to "
                "this stack's EventBridge bus (docs/EVENTS.md)."
            ),
        },
    }
    for env, param in PUSH_PARAMETERS.items():
        parameters[param] = {
            "Type": "String",
            "Default": "",
            "Description": f"{env}: an SNS platform application ARN, or empty (docs/PUSH.md).",
        }
    return parameters


def role_policy(access: FunctionAccess, s: Stage) -> dict[str, Any]:
    return document(statements(access, template_arns(access, s.api_gateway_stage), index_names()))


def merge_template(stage_name: str) -> dict[str, Any]:
    s = stage(stage_name)
    if not s.secret_parameter.startswith("/"):
        raise ValueError("JWT_SECRET_PARAMETER must be a path (start with '/')")
    resources: dict[str, Any] = {TABLE_ID: table_resource()}
    for access in FUNCTIONS:
        resources[log_group_id(access)] = {
            "Type": "AWS::Logs::LogGroup",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {
                "LogGroupName": {
                    "Fn::Sub": f"/aws/lambda/${{AWS::StackName}}-{access.chalice_name}"
                },
                "RetentionInDays": LOG_RETENTION_DAYS,
            },
        }
        variables: dict[str, Any] = {
            "CONNECTIONS_TABLE": {"Ref": TABLE_ID},
            "JWT_SECRET_PARAMETER": {"Ref": SECRET_PARAMETER_ID},
            "AUTHORIZER_FUNCTIONS": authorizer_functions(access),
        }
        # Every function: the stack's queue, never the stage's ``chalice deploy`` name that
        # config.json gives (CONTINUATION_QUEUE_NAME); senders and the worker get its URL.
        variables["CONTINUATION_QUEUE_NAME"] = {"Fn::GetAtt": [QUEUE_ID, "QueueName"]}
        if access.queue_actions:
            variables["CONTINUATION_QUEUE_URL"] = {"Ref": QUEUE_ID}
        if access.publishes_events:
            # Off by default: an empty EVENT_BUS_NAME publishes nothing.
            variables["EVENT_BUS_NAME"] = {"Fn::If": [EVENTS_CONDITION, {"Ref": EVENT_BUS_ID}, ""]}
        if access.mobile_push:
            variables.update({env: {"Ref": param} for env, param in PUSH_PARAMETERS.items()})
        if access.logical_id == WORKER_ID:
            variables["CONTINUATION_PARTIAL_BATCH"] = "true"
        if access.logical_id == "APIHandler":
            # The demo page at GET / dials this stack's WebSocket API.
            variables["WEBSOCKET_URL"] = {
                "Fn::Sub": (
                    f"wss://${{{WEBSOCKET_API_ID}}}.execute-api.${{AWS::Region}}"
                    f".${{AWS::URLSuffix}}/{s.api_gateway_stage}"
                )
            }
        resources[access.logical_id] = {
            "Properties": {
                "Runtime": RUNTIME,
                # The zip is pure Python (deploy/package.py checks it), so it runs on Graviton
                # as it is, at 20% less per GB-second: the sizing model in docs/SCALE.md.
                "Architectures": [ARCHITECTURE],
                "Environment": {"Variables": variables},
                "LoggingConfig": {"LogFormat": "Text", "LogGroup": {"Ref": log_group_id(access)}},
            }
        }
        if access.logical_id == "WebsocketMessage":
            resources[access.logical_id]["Properties"]["ReservedConcurrentExecutions"] = {
                "Fn::If": [
                    RESERVES_CONCURRENCY,
                    {"Ref": RESERVED_CONCURRENCY_PARAMETER},
                    {"Ref": "AWS::NoValue"},
                ]
            }
        resources[access.role_id] = {
            "Properties": {
                "Policies": [
                    {
                        "PolicyName": f"{access.role_id}Policy",
                        "PolicyDocument": role_policy(access, s),
                    }
                ]
            }
        }
    resources.update(event_resources())
    resources.update(schema_registry_resources())
    for rid, resource in continuation_resources().items():
        resources.setdefault(rid, {}).setdefault("Properties", {})
        resources[rid] = _merge(resources[rid], resource)
    websocket_throttle, rest_throttle = THROTTLING
    # Chalice merges these into its own resources key by key.
    resources[WEBSOCKET_STAGE_ID] = {
        "Properties": {
            "DefaultRouteSettings": websocket_throttle.settings(),
            "AccessLogSettings": _when_access_logs(
                {
                    "DestinationArn": {"Fn::GetAtt": [WEBSOCKET_ACCESS_LOG_ID, "Arn"]},
                    "Format": WEBSOCKET_ACCESS_LOG_FORMAT,
                }
            ),
        }
    }
    resources[REST_API_ID] = {
        "Properties": {
            "MethodSettings": [
                {"ResourcePath": "/*", "HttpMethod": "*", **rest_throttle.settings()}
            ],
            "AccessLogSetting": _when_access_logs(
                {
                    "DestinationArn": {"Fn::GetAtt": [REST_ACCESS_LOG_ID, "Arn"]},
                    "Format": REST_ACCESS_LOG_FORMAT,
                }
            ),
        }
    }
    resources.update(access_log_resources())
    parameters: dict[str, Any] = events_parameters()
    for throttle in THROTTLING:
        parameters.update(throttle.parameters())
    parameters.update(opt_in_parameters())
    return {
        "Conditions": conditions(),
        "Parameters": {
            **parameters,
            SECRET_PARAMETER_ID: {
                "Type": "String",
                "Default": s.secret_parameter,
                "AllowedPattern": "^/[A-Za-z0-9_.\\-/]+$",
                "Description": (
                    "Name of the SSM SecureString parameter that holds the JWT secret (HMAC "
                    "key or PEM public key). Create it before deploying; the functions read "
                    "it at cold start, so it never appears in the template or their settings."
                ),
            },
        },
        "Resources": resources,
        "Outputs": {
            "ConnectionsTableName": {"Value": {"Ref": TABLE_ID}},
            "JwtSecretParameter": {"Value": {"Ref": SECRET_PARAMETER_ID}},
            "ContinuationQueueUrl": {"Value": {"Ref": QUEUE_ID}},
            "ContinuationDeadLetterQueueUrl": {"Value": {"Ref": DLQ_ID}},
            "EventBusName": {"Value": {"Ref": EVENT_BUS_ID}},
            "EventBusArn": {"Value": {"Fn::GetAtt": [EVENT_BUS_ID, "Arn"]}},
        },
    }


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Dicts merged key by key (as ``chalice package --merge-template`` does)."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def write(stage_name: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(merge_template(stage_name), indent=2) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the merge template for one stage.")
    parser.add_argument("--stage", default="dev", choices=stages())
    parser.add_argument("-o", "--output", help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    if args.output:
        print(f"wrote {write(args.stage, Path(args.output))}")
    else:
        json.dump(merge_template(args.stage), sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
