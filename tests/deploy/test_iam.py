"""The IAM policies grant exactly what each function calls: run every handler, record its calls.

Every handler of the dev stage runs through ``chalice.test.Client`` (the stage's config.json
environment: jwt auth, the secret from SSM) against moto, with a recording management API.
Each AWS call becomes the (IAM action, resource ARN) that AWS would authorise, then:

- every call is allowed by the function's role in the merge template (intrinsics resolved)
  and by ``.chalice/policy-<stage>.json`` (``chalice deploy``);
- every DynamoDB / execute-api / SSM action a function is granted was used (least privilege);
- every call of the management API that chalicelib's code contains (``post``, ``post_many``,
  ``start_many`` -> POST, ``close`` -> DELETE) ran in the scenario, so the two checks above cover
  every ``@connections`` method a function can use: a code path the scenario misses (token
  expiry closing the socket, which the message function's role once lacked) fails the test.
"""

from __future__ import annotations

import ast
import io
import json
import os
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import botocore.response
import pytest
from chalice.test import Client
from moto import mock_aws

import app as app_module
import chalicelib.wiring as wiring_module
from chalicelib.devices import device_id
from chalicelib.management_api import Outcome
from chalicelib.registry import Target
from deploy import template
from deploy.create_table import create_table
from deploy.policy import AUTHORIZERS, FUNCTIONS, FunctionAccess, event_bus_name
from deploy.policy import function as function_access
from deploy.project import CHALICE_DIR, iam_policy_file, stage
from tests.deploy.iam_eval import allowed, arn_glob
from tests.helpers import SECRET, connect_event, disconnect_event, message_event, token

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
API_ID = "abc123def4"  # tests/events/*.json: domainName abc123def4.execute-api.us-east-1...
STAGE = stage("dev")
# The dev stage's own JWT_ISSUER/JWT_AUDIENCE (.chalice/config.json): its tokens carry them.
STAGE_CLAIMS = {"iss": STAGE.environment["JWT_ISSUER"], "aud": STAGE.environment["JWT_AUDIENCE"]}
QUEUE = STAGE.continuation_queue
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{QUEUE}"
BUS = event_bus_name(STAGE)  # what a chalice-deployed stage sets as EVENT_BUS_NAME
BUS_ARN = f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{BUS}"

Call = tuple[str, str]  # (IAM action, resource ARN)


class Recorder:
    """The calls made while one function runs, attributed to that function."""

    def __init__(self) -> None:
        self.current: str | None = None
        self.calls: dict[str, set[Call]] = defaultdict(set)

    def add(self, action: str, resource: str) -> None:
        assert self.current, f"{action} on {resource} outside a handler"
        self.calls[self.current].add((action, resource))

    def aws_call(self, service: str, operation: str, params: dict[str, Any]) -> None:
        for action, resource in iam_requests(service, operation, params):
            self.add(action, resource)


def table_arn(name: str) -> str:
    return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def iam_requests(service: str, operation: str, params: dict[str, Any]) -> Iterator[Call]:
    """What IAM authorises for one API call (the parts of it this app uses)."""
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            # No TransactWriteItems action: each item is authorised as its own operation.
            for item in params["TransactItems"]:
                ((kind, body),) = item.items()
                yield f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table_arn(body["TableName"])
        elif operation in ("BatchWriteItem", "BatchGetItem"):
            for name in params["RequestItems"]:
                yield f"dynamodb:{operation}", table_arn(name)
        else:
            arn = table_arn(params["TableName"])
            if params.get("IndexName"):
                arn += f"/index/{params['IndexName']}"
            yield f"dynamodb:{operation}", arn
    elif service == "sqs" and operation == "GetQueueUrl":
        yield "sqs:GetQueueUrl", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{params['QueueName']}"
    elif service == "sqs" and "QueueUrl" in params:
        name = params["QueueUrl"].rsplit("/", 1)[-1]
        yield f"sqs:{operation}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    elif service == "events" and operation == "PutEvents":
        for entry in params["Entries"]:
            yield (
                "events:PutEvents",
                f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{entry['EventBusName']}",
            )
    elif service == "sns" and operation == "CreatePlatformEndpoint":
        yield "sns:CreatePlatformEndpoint", params["PlatformApplicationArn"]
    elif service == "sns" and operation == "Publish":
        yield "sns:Publish", params["TargetArn"]
    elif service == "lambda" and operation == "Invoke":
        name = params["FunctionName"]
        arn = (
            name
            if name.startswith("arn:")
            else f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
        )
        yield "lambda:InvokeFunction", arn
    elif service == "ssm" and operation == "GetParameter":
        name = params["Name"] if params["Name"].startswith("/") else "/" + params["Name"]
        yield "ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{name}"
    else:
        raise AssertionError(f"unexpected AWS call {service}:{operation}: map it to IAM")


# The management API's methods as chalicelib calls them, and the HTTP method each one uses on
# @connections (chalicelib/management_api.py: post_to_connection, delete_connection).
# No code path calls GET @connections (connection info) today: a call of any other method on a
# gateway fails test_the_scenario_makes_every_management_call_the_code_can_make until it is
# mapped here (and, for GET, recorded by RecordingGateway and granted).
MANAGEMENT_METHODS = {"post": "POST", "post_many": "POST", "start_many": "POST", "close": "DELETE"}
CHALICELIB = Path(__file__).resolve().parents[2] / "chalicelib"

CallSite = tuple[str, int, int, str]  # (file under chalicelib, first line, last line, method)


def management_call_sites() -> set[CallSite]:
    """Every ``<...>gateway.<method>(...)`` call in chalicelib: what the code can ask of the API."""
    sites: set[CallSite] = set()
    for path in sorted(CHALICELIB.rglob("*.py")):
        if path.name == "management_api.py":  # the client itself: its methods call each other
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = node.func.value
            name = (
                receiver.attr
                if isinstance(receiver, ast.Attribute)
                else receiver.id
                if isinstance(receiver, ast.Name)
                else ""
            )
            if name.lstrip("_") == "gateway":
                end = node.end_lineno or node.lineno
                where = path.relative_to(CHALICELIB).as_posix()
                sites.add((where, node.lineno, end, node.func.attr))
    return sites


class RecordingGateway:
    """The management API as IAM sees it: post -> POST, close -> DELETE; and where it was called."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.outcomes: dict[str, Outcome] = {}
        self.callers: set[tuple[str, int]] = set()  # (file under chalicelib, line)
        self.closed: list[str] = []

    def _caller(self) -> None:
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename == __file__:
            frame = frame.f_back  # type: ignore[assignment]
        if frame is not None:
            path = Path(frame.f_code.co_filename).resolve()
            if path.is_relative_to(CHALICELIB):
                self.callers.add((path.relative_to(CHALICELIB).as_posix(), frame.f_lineno))

    def _record(self, method: str, connection_id: str) -> Outcome:
        self._caller()
        self.recorder.add(
            "execute-api:ManageConnections",
            f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE.api_gateway_stage}/"
            f"{method}/@connections/{connection_id}",
        )
        return self.outcomes.get(connection_id, Outcome.DELIVERED)

    def post(self, connection_id: str, data: bytes, endpoint: str | None = None) -> Outcome:
        return self._record("POST", connection_id)

    def post_many(self, targets: Sequence[Target], data: bytes) -> list[Outcome]:
        return [self._record("POST", t.connection_id) for t in targets]

    def start_many(self, targets: Sequence[Target], data: bytes) -> Callable[[], list[Outcome]]:
        outcomes = self.post_many(targets, data)
        return lambda: outcomes

    def close(self, connection_id: str, endpoint: str | None = None) -> Outcome:
        self.closed.append(connection_id)
        return self._record("DELETE", connection_id)


# The functions' environment on each deploy path, besides the stage's config.json variables
# (which ``Client(stage_name="dev")`` applies): the packaged stack sets the queue's URL and
# turns partial batch responses on (deploy/template.py); ``chalice deploy`` gives the queue's
# name only (CONTINUATION_QUEUE_NAME), and the functions look its URL up.
PATH_ENV = {
    "template": {"CONTINUATION_QUEUE_URL": QUEUE_URL, "CONTINUATION_PARTIAL_BATCH": "true"},
    "file": {},
}

Scenario = tuple[Recorder, RecordingGateway]


def run_scenario(path_env: dict[str, str]) -> Scenario:
    """Run every handler of the dev stage once through its paths."""
    recorder = Recorder()
    gateway = RecordingGateway(recorder)
    original = botocore.client.BaseClient._make_api_call

    def recording_call(self: Any, operation: str, params: dict[str, Any]) -> Any:
        service = self.meta.service_model.service_name
        if recorder.current:
            recorder.aws_call(service, operation, params)
        if service == "lambda" and operation == "Invoke":
            # moto's Lambda runs functions in Docker: run the app's authorizer in-process, as
            # the local gateway does (local_gateway/lambda_invoke.py), and answer as Invoke.
            answer = app_module.authorize_support(json.loads(params["Payload"]), None)
            body = json.dumps(answer).encode()
            return {
                "StatusCode": 200,
                "Payload": botocore.response.StreamingBody(io.BytesIO(body), len(body)),
            }
        return original(self, operation, params)

    mp = pytest.MonkeyPatch()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        **path_env,
    }
    env["EVENT_BUS_NAME"] = BUS  # events on: every publisher's PutEvents is recorded
    for key, value in env.items():
        mp.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL_DYNAMODB", "JWT_SECRET", *PATH_ENV["template"]):
        if key not in env:
            mp.delenv(key, raising=False)
    mp.setattr(botocore.client.BaseClient, "_make_api_call", recording_call)
    mp.setattr(wiring_module, "ManagementApi", lambda *a, **k: gateway)
    try:
        with mock_aws():
            create_table(boto3.client("dynamodb", region_name=REGION), STAGE.table_name)
            boto3.client("ssm", region_name=REGION).put_parameter(
                Name=STAGE.secret_parameter, Value=SECRET, Type="SecureString"
            )
            boto3.client("sqs", region_name=REGION).create_queue(QueueName=QUEUE)
            boto3.client("events", region_name=REGION).create_event_bus(Name=BUS)
            sns = boto3.client("sns", region_name=REGION)
            fcm = sns.create_platform_application(Name="app", Platform="GCM", Attributes={})
            mp.setenv("PUSH_FCM_APPLICATION_ARN", fcm["PlatformApplicationArn"])
            with Client(app_module.app, stage_name="dev") as client:
                _exercise(client, recorder, gateway)
    finally:
        mp.undo()
        app_module.reset_switchboard(None)
    return recorder, gateway


@pytest.fixture(scope="module")
def scenarios() -> dict[str, Scenario]:
    """The scenario on each deploy path: ``template`` (make package) and ``file`` (chalice
    deploy, whose policies are the .chalice/policy-*.json files)."""
    return {source: run_scenario(path_env) for source, path_env in PATH_ENV.items()}


@pytest.fixture(scope="module")
def recorded(scenarios: dict[str, Scenario]) -> dict[str, set[Call]]:
    """The calls per function on the packaged path."""
    return dict(scenarios["template"][0].calls)


def _cold(recorder: Recorder, function: str) -> None:
    """A new container for ``function``: the secret is read again at its first call."""
    app_module.reset_switchboard(None)
    recorder.current = function
    recorder.calls[function]  # ran, even if it makes no AWS call (an authorizer)


def _past_deadline(send: Callable[[], Any]) -> None:
    """``send`` with a fan-out deadline already passed and one-item Query pages: its audience
    goes to the queue with Queries left to page (the worker's Query calls)."""
    switchboard = _built()
    saved = switchboard.broadcaster._deadline_seconds
    switchboard.broadcaster._deadline_seconds = 0.0
    switchboard.registry.page_size = 1
    try:
        send()
    finally:
        switchboard.broadcaster._deadline_seconds = saved
        switchboard.registry.page_size = None


def _built() -> Any:
    """The container's switchboard, built by a handler (the stage env exists only inside one)."""
    assert app_module._switchboard is not None
    return app_module._switchboard


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}",
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def _exercise(client: Client, recorder: Recorder, gateway: RecordingGateway) -> None:
    def ws(name: str, event: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = client.lambda_.invoke(name, event).payload
        assert payload.get("statusCode") == 200, (name, event.get("body"), payload)
        return payload

    def frame(cid: str, body: dict[str, Any]) -> None:
        ws("message", message_event(cid, body))

    def http(method: str, path: str, body: Any = None, user: str | None = None) -> int:
        bearer = token(user, **STAGE_CLAIMS) if user else token("ops", role="admin", **STAGE_CLAIMS)
        headers = {"Authorization": f"Bearer {bearer}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        call = getattr(client.http, method)
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["body"] = json.dumps(body)
        status: int = call(path, **kwargs).status_code
        return status

    _cold(recorder, "WebsocketConnect")
    for cid, user, role in (
        ("a", "u_1", None),
        ("b", "u_2", None),
        ("c", "u_3", None),
        ("d", "ops", "admin"),
        ("e", "u_2", None),  # u_2's second connection: a user's rest can span pages
        ("x", "u_4", None),  # its token expires: the message function closes it
        ("f", "u_5", None),  # removed from lobby by the back end below (DELETE member)
    ):
        claims: dict[str, Any] = {"autoJoin": ["support:u_1"]} if cid == "a" else {}
        event = connect_event(cid, {"token": token(user, role=role, **STAGE_CLAIMS, **claims)})
        ws("connect", event)  # a's autoJoin asks the support room's authorizer
        if cid == "a":  # the same $connect again, as a put retried after a late answer:
            ws("connect", event)  # it reads its own item back and succeeds
    # A user at the connection cap (the stage's 10): the refused handshake reads the holders
    # of its slots (BatchGetItem) to find one whose connection vanished.
    capped = {"token": token("u_cap", **STAGE_CLAIMS)}
    for n in range(10):
        ws("connect", connect_event(f"cap{n}", capped))
    refused = client.lambda_.invoke("connect", connect_event("cap10", capped)).payload
    assert refused.get("statusCode") == 429, refused

    _cold(recorder, "WebsocketMessage")
    frame("a", {"action": "ping"})
    frame("a", {"action": "whoami"})
    frame("a", {"action": "join", "room": "lobby"})
    frame("b", {"action": "join", "room": "support:u_2"})  # asks the authorizer
    frame("f", {"action": "join", "room": "lobby"})
    frame("b", {"action": "join", "room": "lobby"})
    frame("d", {"action": "join", "room": "lobby"})  # hears a's leave when a disconnects
    frame("a", {"action": "members", "room": "lobby"})
    frame("a", {"action": "sendMessage", "targetUserId": "u_2", "text": "hi"})
    idempotent = {
        "action": "sendMessage",
        "targetUserId": "u_2",
        "text": "once",
        "clientMsgId": "m1",
    }
    frame("a", idempotent)
    frame("a", idempotent)  # a retry: answered from the clientMsgId record
    frame("a", {"action": "sendRoom", "room": "lobby", "text": "hi all"})
    frame("b", {"action": "resume", "streams": {"room:lobby": 0}})  # replay posts (POST)
    frame("b", {"action": "leave", "room": "lobby"})
    frame("b", {"action": "join", "room": "side"})  # kicked below: a membership to delete
    frame("c", {"action": "join", "room": "side"})  # its prune deletes a membership too
    gateway.outcomes["c"] = Outcome.GONE  # closed without $disconnect: pruned on 410
    frame("d", {"action": "broadcastAll", "text": "maintenance"})
    frame("e", {"action": "join", "room": "side"})
    # A token that has expired: the next frame closes the socket (DELETE @connections).
    # The table layer holds the one clock every service reads (chalicelib/table.py).
    table = _built().registry.table
    saved_clock = table._clock  # type: ignore[attr-defined]
    table._clock = lambda: saved_clock() + 5400  # type: ignore[attr-defined]  # past x's exp (1 h), before its ttl (2 h+)
    try:
        frame("x", {"action": "whoami"})
    finally:
        table._clock = saved_clock  # type: ignore[attr-defined]
    assert gateway.closed == ["x"], "the expired token's socket was closed"
    _past_deadline(lambda: frame("e", {"action": "sendRoom", "room": "side", "text": "c"}))
    _past_deadline(
        lambda: frame("a", {"action": "sendMessage", "targetUserId": "u_2", "text": "c"})
    )
    _past_deadline(lambda: frame("d", {"action": "broadcastAll", "text": "continued"}))

    _cold(recorder, "APIHandler")
    assert http("get", "/health") == 200
    assert http("post", "/users/u_2/messages", {"text": "from the back end"}) == 200
    assert http("post", "/rooms/lobby/messages", {"text": "room"}) == 200
    assert http("post", "/broadcast", {"text": "all"}) == 200
    for _ in range(2):  # the second is a retry answered from the clientMsgId record
        assert http("post", "/broadcast", {"text": "once", "clientMsgId": "job-1"}) == 200
    assert http("get", "/connections") == 200
    assert http("get", "/rooms/lobby/members") == 200
    _past_deadline(lambda: http("post", "/broadcast", {"text": "continued"}))
    # Takes u_5's connection out of lobby: it gets a removed frame (POST).
    assert http("delete", "/rooms/lobby/members/u_5") == 200
    assert http("delete", "/connections/b") == 204
    # A user's own token registers their phones (one whose token SNS will report dead).
    for device_token in ("live-token", "dead-token", "gone-token"):
        assert http("post", "/me/devices", {"platform": "fcm", "token": device_token}, "u_9") == 200
    assert http("get", "/me/devices", user="u_9") == 200
    assert http("delete", f"/me/devices/{device_id('fcm', 'gone-token')}", user="u_9") == 204
    # Nobody is connected as u_9: the message is undelivered (a Message Undelivered event).
    assert http("post", "/users/u_9/messages", {"text": "are you there?"}) == 200

    _cold(recorder, "PushNotifier")
    app_module._push_notifier.cache_clear()  # a new container: built again from this env
    recorder.current = None  # the platform marks the dead token's endpoint disabled
    sns = boto3.client("sns", region_name=REGION)
    application = os.environ["PUSH_FCM_APPLICATION_ARN"]
    dead = sns.create_platform_endpoint(PlatformApplicationArn=application, Token="dead-token")
    sns.set_endpoint_attributes(EndpointArn=dead["EndpointArn"], Attributes={"Enabled": "false"})
    recorder.current = "PushNotifier"
    event = {
        "source": "switchboard",
        "detail-type": "Message Undelivered",
        "detail": {"to": "u_9", "from": "ops", "preview": "are you there?", "stream": "user:u_9"},
    }
    result = client.lambda_.invoke("push_notifier", event).payload
    assert (result["sent"], result["disabled"]) == (1, 1), result

    _cold(recorder, "ContinueFanOut")
    # The event source mapping receives and deletes under the worker's role, outside its code.
    for action in ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes"):
        recorder.add(f"sqs:{action}", f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}")
    recorder.current = None
    sqs = boto3.client("sqs", region_name=REGION)
    messages = sqs.receive_message(QueueUrl=QUEUE_URL, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 4, "both senders handed their fan-outs on"
    gateway.outcomes["e"] = Outcome.GONE  # pruned by the worker, its side membership too
    recorder.current = "ContinueFanOut"
    # The room's, the user's and the WebSocket broadcast's rests; the last (the HTTP broadcast's)
    # runs past its deadline and hands its rest on again.
    result = client.lambda_.invoke("continue_fan_out", sqs_event(messages[:-1])).payload
    assert result == {"batchItemFailures": []}
    continuation = _built().continuation
    assert continuation is not None
    continuation._deadline_seconds = 0.0
    result = client.lambda_.invoke("continue_fan_out", sqs_event(messages[-1:])).payload
    assert result == {"batchItemFailures": []}

    _cold(recorder, "AuthorizeSupport")
    answer = client.lambda_.invoke(
        "authorize_support", {"userId": "u_1", "room": "support:u_1", "operation": "join"}
    ).payload
    assert answer["allow"] is True

    _cold(recorder, "WebsocketDisconnect")
    ws("disconnect", disconnect_event("a"))
    recorder.current = None


# --- policy evaluation ------------------------------------------------------------------------


def resolve(value: Any) -> str | None:
    """A template ARN with this test's account, region, API id and table; None for logs."""
    names = {
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        template.WEBSOCKET_API_ID: API_ID,
        f"{template.TABLE_ID}.Arn": table_arn(STAGE.table_name),
        template.SECRET_PARAMETER_ID: STAGE.secret_parameter,
        f"{template.QUEUE_ID}.Arn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}",
        f"{template.EVENT_BUS_ID}.Arn": BUS_ARN,
        # The stack's authorizer functions, under the names the scenario invoked (the dev
        # stage's AUTHORIZER_FUNCTIONS; in the stack each is a Ref to the function).
        **{
            f"{function_access(name).logical_id}.Arn": (
                f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
                + json.loads(STAGE.environment["AUTHORIZER_FUNCTIONS"])[name]
            )
            for name in AUTHORIZERS
        },
    }
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        target, attr = value["Fn::GetAtt"]
        if target.endswith("LogGroup"):
            return None
        return names[f"{target}.{attr}"]
    if isinstance(value, dict) and "Fn::Sub" in value:
        text = re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], value["Fn::Sub"])
        assert "${" not in text
        return text
    raise AssertionError(f"unexpected resource {value!r}")


def template_statements(access: FunctionAccess) -> list[dict[str, Any]]:
    role = template.merge_template("dev")["Resources"][access.role_id]
    out = []
    for st in role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]:
        resources = [r for r in (resolve(x) for x in st["Resource"]) if r is not None]
        if resources:
            out.append({**st, "Resource": resources})
    return out


def file_statements(access: FunctionAccess) -> list[dict[str, Any]]:
    """The policy ``chalice deploy`` attaches to the function's role (config.json decides)."""
    name = iam_policy_file(STAGE.name, access.chalice_name)
    assert name, f"config.json gives {access.chalice_name} no iam_policy_file"
    with open(CHALICE_DIR / name, encoding="utf-8") as fh:
        statements: list[dict[str, Any]] = json.load(fh)["Statement"]
    return statements


def unused_grants(statements: list[dict[str, Any]], used: set[Call]) -> list[tuple[str, str]]:
    """(action, resource) grants no recorded call needed; the runtime's log writes aside."""
    unused = []
    for st in statements:
        if st["Sid"] in ("Logs", "LogGroup"):  # the Lambda runtime writes logs, not the code
            continue
        for action in st["Action"]:
            for resource in st["Resource"]:
                pattern = arn_glob(resource)
                if not any(a == action and pattern.match(r) for a, r in used):
                    unused.append((action, resource))
    return unused


# The template's role (``chalice package``) and the policy file (``chalice deploy``).
POLICIES: dict[str, Callable[[FunctionAccess], list[dict[str, Any]]]] = {
    "template": template_statements,
    "file": file_statements,
}


@pytest.mark.parametrize("access", FUNCTIONS, ids=lambda f: f.logical_id)
@pytest.mark.parametrize("source", POLICIES)
def test_policy_allows_every_call_of_its_function(
    scenarios: dict[str, Scenario], source: str, access: FunctionAccess
) -> None:
    assert access.logical_id in scenarios[source][0].calls, f"never ran {access.logical_id}"
    calls = scenarios[source][0].calls[access.logical_id]
    statements = POLICIES[source](access)
    denied = sorted(c for c in calls if not allowed(statements, *c))
    assert denied == [], f"{source}: {access.logical_id} would be denied: {denied}"


@pytest.mark.parametrize("access", FUNCTIONS, ids=lambda f: f.logical_id)
@pytest.mark.parametrize("source", POLICIES)
def test_policy_grants_nothing_its_function_does_not_use(
    scenarios: dict[str, Scenario], source: str, access: FunctionAccess
) -> None:
    unused = unused_grants(POLICIES[source](access), scenarios[source][0].calls[access.logical_id])
    assert unused == [], f"{source}: {access.logical_id} is granted more than it uses: {unused}"


def test_every_function_reads_the_secret_and_only_senders_post(
    recorded: dict[str, set[Call]],
) -> None:
    def methods(fn: str) -> set[str]:
        return {r.split("/")[2] for a, r in recorded[fn] if a == "execute-api:ManageConnections"}

    for access in FUNCTIONS:
        reads = any(a == "ssm:GetParameter" for a, _ in recorded[access.logical_id])
        assert reads == access.reads_secret, access.logical_id
    assert methods("WebsocketConnect") == set()
    assert methods("WebsocketDisconnect") == {"POST"}  # announces the user's presence leave
    # An expired token closes its socket (service._expire): DELETE.
    assert methods("WebsocketMessage") == {"POST", "DELETE"}
    assert methods("APIHandler") == {"POST", "DELETE"}


@pytest.mark.parametrize("source", PATH_ENV)
def test_the_scenario_makes_every_management_call_the_code_can_make(
    scenarios: dict[str, Scenario], source: str
) -> None:
    """A management API call site the scenario never reaches is a method no policy test saw:
    extend ``_exercise`` until it reaches it (and grant the method if a role lacks it)."""
    sites = management_call_sites()
    assert sites, "no management API call found in chalicelib: the scan is broken"
    unmapped = sorted(site for site in sites if site[3] not in MANAGEMENT_METHODS)
    assert unmapped == [], f"management API methods with no HTTP method here: {unmapped}"
    hit = scenarios[source][1].callers
    missed = sorted(
        site
        for site in sites
        if not any(f == site[0] and site[1] <= ln <= site[2] for f, ln in hit)
    )
    assert missed == [], f"management API calls the IAM scenario never makes: {missed}"
