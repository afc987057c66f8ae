"""``make chalice-deploy``: what ``chalice deploy`` needs before it runs, then ``chalice deploy``.

    python -m deploy.chalice_deploy --stage dev [--region R] [--profile P] [--only-resources]

Chalice creates the worker's SQS event source mapping itself, so the queue must exist first,
and Lambda refuses a mapping whose queue's visibility timeout is shorter than the function's
timeout ("Configuring a queue to use with Lambda", Lambda developer guide, which recommends
six times the function's timeout). In order:

1. the stage's table (``deploy/create_table.py``, from chalicelib/schema.json);
2. the stage's continuation queue ``CONTINUATION_QUEUE_NAME`` (.chalice/config.json) and its
   dead-letter queue ``<name>-dlq``: visibility timeout six times the worker's
   ``lambda_timeout``, ``maxReceiveCount`` 5, 14 days' retention on the dead-letter queue,
   SQS-managed encryption, as in the packaged stack (``deploy/template.py``). An existing queue
   gets these attributes again;
3. ``chalice deploy --stage <stage>`` with ``CONTINUATION_QUEUE_NAME`` in its environment:
   app.py's ``on_sqs_message`` reads the queue's name when Chalice imports it (Chalice has no
   per-stage decorator argument, aws/chalice#1385), so the worker is subscribed to this stage's
   queue, never another stage's.

Chalice 1.34's mapping has no ``FunctionResponseTypes``: the worker is subscribed one job per
batch and raises when the job fails (app.py), so SQS delivers it again. Chalice sets the
functions' runtime from the Python it runs on: run this with Python 3.12 or 3.13 (``make
chalice-deploy`` builds such a virtualenv).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

from deploy.create_table import ensure_table
from deploy.project import PROJECT_DIR, Stage, chalice_config, stage, stages
from deploy.template import DLQ_RETENTION_SECONDS, MAX_RECEIVES

WORKER = "continue_fan_out"  # app.py's on_sqs_message function
VISIBILITY_FACTOR = 6  # AWS: at least six times the function's timeout
# Lambda runtimes a new function can have (python3.11 can no longer be created).
DEPLOYABLE_PYTHONS = ((3, 12), (3, 13))


def worker_timeout(stage_name: str) -> int:
    """The worker's ``lambda_timeout`` as Chalice reads it (stage setting over top-level)."""
    config = chalice_config()
    value = config.get("lambda_timeout", 60)
    for scope in (config, config["stages"].get(stage_name, {})):
        value = scope.get("lambda_functions", {}).get(WORKER, {}).get("lambda_timeout", value)
    return int(value)


def dead_letter_name(queue: str) -> str:
    return f"{queue}-dlq"


def ensure_queues(sqs: Any, queue: str, function_timeout: int) -> tuple[str, str]:
    """Create (or update) the continuation queue and its dead-letter queue; their URLs."""
    dlq_url = sqs.create_queue(QueueName=dead_letter_name(queue))["QueueUrl"]
    dlq_attributes = {
        "MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS),
        "SqsManagedSseEnabled": "true",
    }
    sqs.set_queue_attributes(QueueUrl=dlq_url, Attributes=dlq_attributes)
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    attributes = {
        "VisibilityTimeout": str(VISIBILITY_FACTOR * function_timeout),
        "SqsManagedSseEnabled": "true",
        "RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVES}
        ),
    }
    # CreateQueue refuses different attributes for an existing name: create bare, then set.
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url, dlq_url


def chalice_command(s: Stage) -> list[str]:
    # chalice.cli has no __main__: call its entry point with this Python (Chalice takes the
    # functions' runtime from it).
    code = "import sys; from chalice.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code, "deploy", "--stage", s.name]


Runner = Callable[[list[str], dict[str, str]], int]


def _run(command: list[str], env: dict[str, str]) -> int:
    return subprocess.run(command, cwd=PROJECT_DIR, env=env, check=False).returncode


def main(
    argv: Sequence[str] | None = None,
    session: Any = None,
    run: Runner = _run,
    python: tuple[int, int] = (sys.version_info.major, sys.version_info.minor),
) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev", choices=stages())
    parser.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    parser.add_argument("--profile", help="AWS profile (default: your AWS configuration's)")
    parser.add_argument(
        "--only-resources",
        action="store_true",
        help="create the table and the queues, do not run chalice deploy",
    )
    args = parser.parse_args(argv)
    s = stage(args.stage)
    if not args.only_resources and python not in DEPLOYABLE_PYTHONS:
        print(
            f"Python {python[0]}.{python[1]}: Chalice would create python{python[0]}.{python[1]} "
            "functions, which Lambda refuses. Run this with Python 3.12 or 3.13 (make "
            "chalice-deploy builds such a virtualenv), or pass --only-resources.",
            file=sys.stderr,
        )
        return 2
    if session is None:
        import boto3

        session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
    if not session.region_name:
        print("no AWS region: pass --region or set AWS_REGION", file=sys.stderr)
        return 2
    created = ensure_table(session.client("dynamodb"), s.table_name)
    print(f"table {s.table_name}: {'created' if created else 'exists'}")
    url, dlq_url = ensure_queues(
        session.client("sqs"), s.continuation_queue, worker_timeout(s.name)
    )
    print(f"queue {url} (dead letters: {dlq_url})")
    if args.only_resources:
        return 0
    env = dict(os.environ, CONTINUATION_QUEUE_NAME=s.continuation_queue)
    env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = session.region_name
    if args.profile:
        env["AWS_PROFILE"] = args.profile
    return run(chalice_command(s), env)


if __name__ == "__main__":
    raise SystemExit(main())
