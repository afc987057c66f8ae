"""Least-privilege IAM for switchboard: what each Lambda calls, written down once.

Two renderings of the same table (``FUNCTIONS``):

- ``.chalice/policy-<stage>.json`` for ``chalice deploy`` (``autogen_policy: false``): one
  document for every function of the stage, on the stage's table by name. The API id is not
  known before the first deploy, so ``@connections`` is limited to the stage path and methods.
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

from deploy.project import CHALICE_DIR, Stage, index_names, stage, stages


@dataclass(frozen=True)
class FunctionAccess:
    """What one Lambda function may do."""

    chalice_name: str  # Chalice's function name (config.json "lambda_functions" key)
    logical_id: str  # the function's resource in the packaged template
    role_id: str  # its role's resource in the packaged template
    table_actions: tuple[str, ...]  # DynamoDB actions on the table itself
    index_actions: tuple[str, ...]  # DynamoDB actions on its global secondary indexes
    connection_methods: tuple[str, ...]  # @connections methods (POST send, DELETE close)


FUNCTIONS: tuple[FunctionAccess, ...] = (
    FunctionAccess(
        "websocket_connect",
        "WebsocketConnect",
        "WebsocketConnectRole",
        table_actions=("PutItem",),  # register (conditional put)
        index_actions=(),
        connection_methods=(),
    ),
    FunctionAccess(
        "websocket_disconnect",
        "WebsocketDisconnect",
        "WebsocketDisconnectRole",
        # remove: read rooms, batch-delete memberships, delete the connection (ALL_OLD)
        table_actions=("GetItem", "BatchWriteItem", "DeleteItem"),
        index_actions=(),
        connection_methods=(),
    ),
    FunctionAccess(
        "websocket_message",
        "WebsocketMessage",
        "WebsocketMessageRole",
        # get; join/leave transactions (Put, Update, Delete); room Query; prune on 410.
        table_actions=(
            "GetItem",
            "PutItem",
            "UpdateItem",
            "DeleteItem",
            "Query",
            "BatchWriteItem",
        ),
        index_actions=("Query",),  # a user's connections (GSI1), everyone (GSI2)
        connection_methods=("POST",),
    ),
    FunctionAccess(
        "api_handler",
        "APIHandler",
        "ApiHandlerRole",
        # push to user/room/all, list, kick (get + remove), prune on 410.
        table_actions=("GetItem", "Query", "BatchWriteItem", "DeleteItem"),
        index_actions=("Query",),
        connection_methods=("POST", "DELETE"),
    ),
)

LOG_ACTIONS = ("logs:CreateLogStream", "logs:PutLogEvents")
SECRET_ACTIONS = ("ssm:GetParameter",)


def function(name: str) -> FunctionAccess:
    for access in FUNCTIONS:
        if name in (access.chalice_name, access.logical_id):
            return access
    raise KeyError(name)


def union() -> FunctionAccess:
    """Everything any function may do: the one document ``chalice deploy`` attaches to all."""

    def merged(attr: str) -> tuple[str, ...]:
        out: list[str] = []
        for access in FUNCTIONS:
            for item in getattr(access, attr):
                if item not in out:
                    out.append(item)
        return tuple(out)

    return FunctionAccess(
        "*",
        "*",
        "*",
        table_actions=merged("table_actions"),
        index_actions=merged("index_actions"),
        connection_methods=merged("connection_methods"),
    )


@dataclass(frozen=True)
class Arns:
    """Resource ARNs (strings, or CloudFormation intrinsics) for one rendering."""

    table: Any
    index: Callable[[str], Any]
    connections: Callable[[str], Any]  # method -> @connections ARN
    secret: Any
    log_groups: list[Any]  # for logs:CreateLogGroup (chalice deploy only)
    log_streams: list[Any]  # for logs:CreateLogStream / PutLogEvents


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
                "Resource": [arns.index(name) for name in indexes],
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


def document(statement_list: list[dict[str, Any]]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statement_list}


def _parameter_arn_suffix(name: str) -> str:
    return name if name.startswith("/") else "/" + name


def static_arns(s: Stage) -> Arns:
    """ARNs for ``chalice deploy``: any region and account, but this stage's names only."""
    table = f"arn:aws:dynamodb:*:*:table/{s.table_name}"
    # Chalice names every function "<app>-<stage>-<function>" (api_handler, websocket_*).
    group = f"arn:aws:logs:*:*:log-group:/aws/lambda/{s.app_name}-{s.name}-*"
    return Arns(
        table=table,
        index=lambda name: f"{table}/index/{name}",
        connections=lambda method: (
            f"arn:aws:execute-api:*:*:*/{s.api_gateway_stage}/{method}/@connections/*"
        ),
        secret=f"arn:aws:ssm:*:*:parameter{_parameter_arn_suffix(s.secret_parameter)}",
        log_groups=[group],
        log_streams=[f"{group}:*"],
    )


def stage_policy(name: str) -> dict[str, Any]:
    """The contents of ``.chalice/policy-<stage>.json``."""
    s = stage(name)
    return document(statements(union(), static_arns(s), index_names()))


def render(policy: dict[str, Any]) -> str:
    return json.dumps(policy, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name in stages():
        path = CHALICE_DIR / stage(name).policy_file
        wanted = render(stage_policy(name))
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == wanted:
            continue
        if args.check:
            stale.append(str(path.relative_to(CHALICE_DIR.parent)))
        else:
            path.write_text(wanted, encoding="utf-8")
            print(f"wrote {path.relative_to(CHALICE_DIR.parent)}")
    if stale:
        print(f"out of date (run python -m deploy.policy): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
