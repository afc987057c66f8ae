"""Least-privilege IAM for switchboard: what each Lambda calls, written down once.

Two renderings of the same table (``FUNCTIONS``), both one policy per function:

- ``.chalice/policy-<stage>-<function>.json`` for ``chalice deploy`` (``autogen_policy:
  false``; config.json points each function of each stage at its file): the stage's table by
  name, the function's own log group by name. The WebSocket API id is not known before the
  first deploy, so ``@connections`` is limited to the stage path and methods; every stage has
  its own API Gateway stage name (``api_gateway_stage``), so no stage can reach another's
  connections.
- per-function role policies in the merge template (``deploy/template.py``): the table and
  indexes by ``Fn::GetAtt``, ``@connections`` of this stack's WebSocket API only, the
  function's own log group.

Transactions have no IAM action of their own: ``TransactWriteItems`` is authorised item by
item (Put -> PutItem, Update -> UpdateItem, Delete -> DeleteItem, ConditionCheck ->
ConditionCheckItem). ``tests/deploy/test_iam.py`` runs every handler against moto, records
the AWS calls each one makes and checks them against this table.

Run ``python -m deploy.policy`` to rewrite the policy files, ``--check`` to verify them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from deploy.project import CHALICE_DIR, Stage, iam_policy_file, index_names, stage, stages


@dataclass(frozen=True)
class FunctionAccess:
    """What one Lambda function may do."""

    chalice_name: str  # Chalice's function name (config.json "lambda_functions" key)
    logical_id: str  # the function's resource in the packaged template
    role_id: str  # its role's resource in the packaged template
    table_actions: tuple[str, ...]  # DynamoDB actions on the table itself
    index_actions: tuple[str, ...]  # DynamoDB actions on its global secondary indexes
    connection_methods: tuple[str, ...]  # @connections methods (POST send, DELETE close)
    # The indexes ``index_actions`` apply to; None: every index of the table.
    only_indexes: tuple[str, ...] | None = None
    # SQS actions on the continuation queue: senders enqueue the rest of a fan-out; the
    # worker's event source mapping receives and deletes under the worker's role.
    queue_actions: tuple[str, ...] = ()
    # The app's authorizer functions (Chalice names) it invokes: lambda:InvokeFunction on
    # those functions only (chalicelib/authorizer.py; the namespaces that name them).
    invokes: tuple[str, ...] = ()
    # Every function that builds the switchboard reads the JWT secret at cold start; an
    # authorizer function does not.
    reads_secret: bool = True
    # events:PutEvents on the stage's event bus (chalicelib/bus.py): the functions that
    # remove connections, announce presence or send messages.
    publishes_events: bool = False
    # SNS mobile push (chalicelib/push.py): endpoints under the platform applications, and
    # publishing to them.
    mobile_push: bool = False


# The app's example authorizer (app.py's @app.lambda_function, named by chalicelib/namespaces.json).
AUTHORIZERS = ("authorize_support",)

FUNCTIONS: tuple[FunctionAccess, ...] = (
    FunctionAccess(
        "websocket_connect",
        "WebsocketConnect",
        "WebsocketConnectRole",
        # register: the user's slot items (Query), their holders when all are held
        # (BatchGetItem), the connection and its slot in one transaction (conditional puts:
        # TransactWriteItems is authorised item by item); a put retried after a late answer
        # reads its own item back; the token's autoJoin rooms: the join transaction (membership
        # Put, connection and presence Updates), the authorizer's cached answer and the pending
        # enters (Update). No POST: $connect cannot reach its own socket; the first frame
        # announces the enters.
        table_actions=("PutItem", "GetItem", "UpdateItem", "Query", "BatchGetItem"),
        index_actions=(),
        connection_methods=(),
        invokes=AUTHORIZERS,  # autoJoin rooms in an authorizer namespace
        publishes_events=True,  # Connection Opened
    ),
    FunctionAccess(
        "websocket_disconnect",
        "WebsocketDisconnect",
        "WebsocketDisconnectRole",
        # remove: read rooms, batch-delete memberships, delete the connection (ALL_OLD);
        # presence: update (and delete) the user's item per room, and announce a leave: room
        # size and members Query, log (seq by UpdateItem, message by PutItem), POST.
        table_actions=("GetItem", "BatchWriteItem", "DeleteItem", "UpdateItem", "Query", "PutItem"),
        index_actions=(),
        connection_methods=("POST",),
        publishes_events=True,  # Connection Closed, Presence Left
    ),
    FunctionAccess(
        "websocket_message",
        "WebsocketMessage",
        "WebsocketMessageRole",
        # get; join/leave transactions (Put, Update, Delete); room Query; prune on 410;
        # clientMsgId records (conditional Put, Update; Delete when the log refused a send);
        # the rate limit (conditional UpdateItem); the rooms-per-user cap (BatchGetItem).
        table_actions=(
            "BatchGetItem",
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "BatchWriteItem",
        ),
        index_actions=("Query",),  # a user's connections (GSI1), everyone (GSI2)
        # POST: replies, fan-out, replay; DELETE: an expired token closes its socket.
        connection_methods=("POST", "DELETE"),
        queue_actions=("SendMessage",),  # a fan-out's rest past its deadline
        invokes=AUTHORIZERS,  # join (and reads) in an authorizer namespace
        publishes_events=True,
    ),
    FunctionAccess(
        "api_handler",
        "APIHandler",
        "ApiHandlerRole",
        # push to user/room/all (logged first: seq by UpdateItem, message by PutItem), history
        # (Query + GetItem of the stream head), list, kick (get + remove), prune on 410;
        # clientMsgId records as for websocket_message.
        table_actions=("GetItem", "PutItem", "UpdateItem", "Query", "BatchWriteItem", "DeleteItem"),
        index_actions=("Query",),
        connection_methods=("POST", "DELETE"),
        queue_actions=("SendMessage",),
        publishes_events=True,
    ),
    FunctionAccess(
        "continue_fan_out",
        "ContinueFanOut",
        "ContinueFanOutRole",
        # the logged frame (GetItem), a room's or user's rest (Query), prune on 410 (removal,
        # and the presence leave it announces: UpdateItem on the user's item, the event logged
        # with UpdateItem + PutItem); a job's connections read back for their stored endpoints
        # (BatchGetItem) and its one-time claim (conditional PutItem, UpdateItem, DeleteItem).
        table_actions=(
            "BatchGetItem",
            "GetItem",
            "PutItem",
            "UpdateItem",
            "Query",
            "BatchWriteItem",
            "DeleteItem",
        ),
        index_actions=("Query",),
        connection_methods=("POST",),
        # SendMessage: its own rest; the others: the event source mapping, under this role.
        queue_actions=("SendMessage", "ReceiveMessage", "DeleteMessage", "GetQueueAttributes"),
        publishes_events=True,  # a pruned connection's close
    ),
    FunctionAccess(
        "push_notifier",
        "PushNotifier",
        "PushNotifierRole",
        # the user's devices (Query), a device whose token SNS reports disabled (DeleteItem)
        table_actions=("Query", "DeleteItem"),
        index_actions=(),
        connection_methods=(),
        mobile_push=True,
    ),
    FunctionAccess(
        "authorize_support",
        "AuthorizeSupport",
        "AuthorizeSupportRole",
        # Decides from its event alone: its own logs, nothing else.
        table_actions=(),
        index_actions=(),
        connection_methods=(),
        reads_secret=False,
    ),
)

LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
SECRET_ACTIONS = ("ssm:GetParameter",)


def function(name: str) -> FunctionAccess:
    for access in FUNCTIONS:
        if name in (access.chalice_name, access.logical_id):
            return access
    raise KeyError(name)


@dataclass(frozen=True)
class Arns:
    """Resource ARNs (strings, or CloudFormation intrinsics) for one rendering."""

    table: Any
    index: Callable[[str], Any]
    connections: Callable[[str], Any]  # method -> @connections ARN
    secret: Any
    log_groups: list[Any]  # for logs:CreateLogGroup (chalice deploy only)
    log_streams: list[Any]  # for logs:CreateLogStream / PutLogEvents
    queue: Any = None  # the continuation queue
    # ``chalice deploy``: the functions know the queue by name and look its URL up.
    queue_by_name: bool = False
    function: Callable[[str], Any] | None = None  # an app function's ARN, by Chalice name
    event_bus: Any = None  # the stage's EventBridge bus
    push_applications: Any = None  # SNS platform applications (CreatePlatformEndpoint)
    push_endpoints: Any = None  # their endpoints (Publish)


def statements(access: FunctionAccess, arns: Arns, indexes: Iterable[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if access.table_actions:
        out.append(
            {
                "Sid": "RegistryTable",
                "Effect": "Allow",
                "Action": [f"dynamodb:{a}" for a in access.table_actions],
                "Resource": [arns.table],
            }
        )
    if access.index_actions:
        out.append(
            {
                "Sid": "RegistryIndexes",
                "Effect": "Allow",
                "Action": [f"dynamodb:{a}" for a in access.index_actions],
                "Resource": [
                    arns.index(name)
                    for name in indexes
                    if access.only_indexes is None or name in access.only_indexes
                ],
            }
        )
    if access.connection_methods:
        out.append(
            {
                "Sid": "ManageConnections",
                "Effect": "Allow",
                "Action": ["execute-api:ManageConnections"],
                "Resource": [arns.connections(m) for m in access.connection_methods],
            }
        )
    if access.queue_actions:
        extra = ("GetQueueUrl",) if arns.queue_by_name else ()
        actions = [f"sqs:{a}" for a in (*access.queue_actions, *extra)]
        out.append(_allow("ContinuationQueue", actions, [arns.queue]))
    if access.publishes_events:
        out.append(_allow("EventBus", ["events:PutEvents"], [arns.event_bus]))
    if access.mobile_push:
        out.append(
            _allow("PushEndpoints", ["sns:CreatePlatformEndpoint"], [arns.push_applications])
        )
        out.append(_allow("PushPublish", ["sns:Publish"], [arns.push_endpoints]))
    if access.invokes:
        assert arns.function is not None
        functions = [arns.function(name) for name in access.invokes]
        out.append(_allow("Authorizers", ["lambda:InvokeFunction"], functions))
    if access.reads_secret:
        out.append(
            {
                "Sid": "JwtSecret",
                "Effect": "Allow",
                "Action": list(SECRET_ACTIONS),
                "Resource": [arns.secret],
            }
        )
    if arns.log_groups:
        out.append(
            {
                "Sid": "LogGroup",
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup"],
                "Resource": list(arns.log_groups),
            }
        )
    out.append(
        {
            "Sid": "Logs",
            "Effect": "Allow",
            "Action": list(LOG_ACTIONS),
            "Resource": list(arns.log_streams),
        }
    )
    return out


def _allow(sid: str, actions: list[str], resources: list[Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}


def document(statement_list: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statement_list}


def _parameter_arn_suffix(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def static_arns(s: Stage, access: FunctionAccess) -> Arns:
    """ARNs for ``chalice deploy``: any region and account, this stage's names only."""
    table = f"arn:aws:dynamodb:*:*:table/{s.table_name}"
    # Chalice names every function "<app>-<stage>-<function>", its log group after it.
    group = f"arn:aws:logs:*:*:log-group:/aws/lambda/{s.app_name}-{s.name}-{access.chalice_name}"
    return Arns(
        table=table,
        index=lambda name: f"{table}/index/{name}",
        # "*" is the API id (unknown before the first deploy); the stage name tells stages apart.
        connections=lambda method: (
            f"arn:aws:execute-api:*:*:*/{s.api_gateway_stage}/{method}/@connections/*"
        ),
        secret=f"arn:aws:ssm:*:*:parameter{_parameter_arn_suffix(s.secret_parameter)}",
        log_groups=[group],
        log_streams=[f"{group}:*"],
        # The stage's own queue (CONTINUATION_QUEUE_NAME): ``chalice deploy`` subscribes the
        # worker to it by name, and the senders look its URL up by name.
        queue=f"arn:aws:sqs:*:*:{s.continuation_queue}",
        queue_by_name=True,
        # Chalice names the function as its log group says; AUTHORIZER_FUNCTIONS in the
        # stage's environment_variables names it the same way (problems() checks).
        function=lambda name: f"arn:aws:lambda:*:*:function:{s.app_name}-{s.name}-{name}",
        # The bus a chalice-deployed stage sets as EVENT_BUS_NAME (docs/EVENTS.md).
        event_bus=f"arn:aws:events:*:*:event-bus/{event_bus_name(s)}",
        push_applications="arn:aws:sns:*:*:app/*",
        push_endpoints="arn:aws:sns:*:*:endpoint/*",
    )


def event_bus_name(s: Stage) -> str:
    """The stage's bus for ``chalice deploy`` (the packaged stack names its own)."""
    return f"{s.app_name}-{s.name}"


def policy_file(stage_name: str, access: FunctionAccess) -> str:
    """The file name of one function's policy for ``chalice deploy``."""
    return f"policy-{stage_name}-{access.chalice_name}.json"


def function_policy(stage_name: str, access: FunctionAccess) -> dict[str, Any]:
    """The contents of ``.chalice/policy-<stage>-<function>.json``."""
    s = stage(stage_name)
    return document(statements(access, static_arns(s, access), index_names()))


def problems() -> list[str]:
    """What keeps ``chalice deploy`` from getting the generated policies, besides stale files."""
    out = []
    generated = {policy_file(n, a) for n in stages() for a in FUNCTIONS}
    for name in stages():
        for access in FUNCTIONS:
            wanted = policy_file(name, access)
            used = iam_policy_file(name, access.chalice_name)
            if used != wanted:
                out.append(
                    f"config.json: stage {name!r} function {access.chalice_name!r} uses "
                    f"{used}, not {wanted} (set stages.{name}.lambda_functions."
                    f"{access.chalice_name}.iam_policy_file)"
                )
    for name in stages():
        out.extend(authorizer_problems(name))
    by_path: dict[str, list[str]] = {}
    for name in stages():
        by_path.setdefault(stage(name).api_gateway_stage, []).append(name)
    for path_name, shared in sorted(by_path.items()):
        if len(shared) > 1:
            # The @connections grants tell stages apart by this path only.
            out.append(
                f"config.json: stages {', '.join(shared)} share api_gateway_stage "
                f"{path_name!r}: each could post to the other's connections"
            )
    # What each stage owns by name on the ``chalice deploy`` path: a shared one mixes stages
    # (two workers consuming one queue take each other's jobs).
    for variable in ("CONNECTIONS_TABLE", "JWT_SECRET_PARAMETER", "CONTINUATION_QUEUE_NAME"):
        by_value: dict[str, list[str]] = {}
        for name in stages():
            by_value.setdefault(stage(name).environment[variable], []).append(name)
        for value, shared in sorted(by_value.items()):
            if len(shared) > 1:
                out.append(
                    f"config.json: stages {', '.join(shared)} share {variable} {value!r}: "
                    "each stage needs its own"
                )
    for path in sorted(CHALICE_DIR.glob("policy-*.json")):
        if path.name not in generated:
            out.append(f"{path.relative_to(CHALICE_DIR.parent)} is not generated: remove it")
    return out


def authorizer_problems(stage_name: str) -> list[str]:
    """``chalice deploy`` finds an authorizer by the name AUTHORIZER_FUNCTIONS gives it in the
    stage's environment_variables: it must be the name Chalice deploys it under, and every
    authorizer the stage's namespaces name must be one the roles may invoke."""
    from chalicelib.namespaces import load

    s = stage(stage_name)
    out = []
    try:
        names = json.loads(s.environment.get("AUTHORIZER_FUNCTIONS") or "{}")
    except ValueError:
        names = None
    if not isinstance(names, dict):
        return [f"config.json: stage {stage_name!r} AUTHORIZER_FUNCTIONS is not a JSON object"]
    for name in sorted(load(s.environment.get("ROOM_NAMESPACES")).authorizers()):
        if name not in AUTHORIZERS:
            out.append(f"namespaces: authorizer {name!r} is not in deploy.policy.AUTHORIZERS")
    for name in AUTHORIZERS:
        wanted = f"{s.app_name}-{stage_name}-{name}"
        if names.get(name) != wanted:
            out.append(
                f"config.json: stage {stage_name!r} AUTHORIZER_FUNCTIONS must map {name!r} "
                f"to {wanted!r} (the name chalice deploy gives it)"
            )
    return out


def render(policy: dict[str, Any]) -> str:
    return json.dumps(policy, indent=2) + "\n"


# docs/DEPLOY.md's IAM summary sits between these markers and is generated from FUNCTIONS, so
# it cannot go stale (``--check`` fails when it differs).
DEPLOY_DOC = CHALICE_DIR.parent / "docs" / "DEPLOY.md"
SUMMARY_START = "<!-- iam-summary: generated by python -m deploy.policy -->"
SUMMARY_END = "<!-- /iam-summary -->"


def summary() -> str:
    """The per-function grants as a Markdown table (both deploy paths)."""

    def cell(items: Iterable[str]) -> str:
        return ", ".join(f"`{i}`" for i in items) or "none"

    rows = [
        "| function | table | indexes | `@connections` | continuation queue | invokes | other |",
        "|---|---|---|---|---|---|---|",
    ]
    for access in FUNCTIONS:
        indexes = cell(access.index_actions)
        if access.index_actions and access.only_indexes:
            indexes += f" ({', '.join(access.only_indexes)} only)"
        other = [
            *(["events:PutEvents (the stage's bus)"] if access.publishes_events else []),
            *(["sns:CreatePlatformEndpoint", "sns:Publish"] if access.mobile_push else []),
        ]
        rows.append(
            f"| `{access.chalice_name}` | {cell(access.table_actions)} | {indexes} | "
            f"{cell(access.connection_methods)} | {cell(access.queue_actions)} | "
            f"{cell(access.invokes)} | {cell(other)} |"
        )
    return "\n".join(rows)


def _doc_with_summary(text: str) -> str:
    start, end = text.find(SUMMARY_START), text.find(SUMMARY_END)
    if start < 0 or end < start:
        raise ValueError(f"{DEPLOY_DOC.name} lacks the {SUMMARY_START} ... {SUMMARY_END} block")
    return text[: start + len(SUMMARY_START)] + "\n" + summary() + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in stages():
        for access in FUNCTIONS:
            path = CHALICE_DIR / policy_file(name, access)
            wanted = render(function_policy(name, access))
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current == wanted:
                continue
            if args.check:
                stale.append(str(path.relative_to(CHALICE_DIR.parent)))
            else:
                path.write_text(wanted, encoding="utf-8")
                print(f"wrote {path.relative_to(CHALICE_DIR.parent)}")
    doc = DEPLOY_DOC.read_text(encoding="utf-8")
    wanted_doc = _doc_with_summary(doc)
    if doc != wanted_doc:
        if args.check:
            stale.append(str(DEPLOY_DOC.relative_to(CHALICE_DIR.parent)))
        else:
            DEPLOY_DOC.write_text(wanted_doc, encoding="utf-8")
            print(f"wrote {DEPLOY_DOC.relative_to(CHALICE_DIR.parent)} (IAM summary)")
    wrong = problems()
    for problem in wrong:
        print(problem, file=sys.stderr)
    if stale:
        print(f"out of date (run python -m deploy.policy): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
