"""Create a stage's connections table for ``chalice deploy`` (packaged stacks create their own).

    python -m deploy.create_table --stage dev [--region eu-west-1] [--endpoint-url URL]

The table name is the stage's ``CONNECTIONS_TABLE`` in .chalice/config.json and the definition
is chalicelib/schema.json (``create_table`` below, also used by the tests and benchmarks: the
same keys, indexes, on-demand billing and TTL as the template). Point-in-time recovery is switched on like in the
template (``--no-pitr`` to skip it, e.g. for DynamoDB Local). Running it again is harmless:
an existing table is left as it is, and TTL / point-in-time recovery are (re)applied.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from chalicelib.schema import load_schema, ttl_attribute
from deploy.project import stage, stages


def create_table_kwargs(table_name: str) -> dict[str, Any]:
    """Arguments for DynamoDB ``CreateTable`` built from the schema."""
    schema = load_schema()
    schema.pop("TimeToLiveAttribute")
    return {"TableName": table_name, **schema}


def create_table(client: Any, table_name: str, wait: bool = True) -> bool:
    """Create the table (and enable TTL) if it does not exist. Returns True if created."""
    try:
        client.describe_table(TableName=table_name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    client.create_table(**create_table_kwargs(table_name))
    if wait:
        client.get_waiter("table_exists").wait(
            TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute()},
    )
    return True


def ensure_table(client: Any, table_name: str, pitr: bool = True) -> bool:
    """Create ``table_name`` if missing and make sure TTL and PITR are on. True if created."""
    created = create_table(client, table_name)
    if not created:
        ttl = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
        if ttl.get("TimeToLiveStatus") in (None, "DISABLED"):
            client.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute()},
            )
    if pitr:
        client.update_continuous_backups(
            TableName=table_name,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
        )
    return created


def main(argv: list[str] | None = None, client: Any = None) -> int:
    parser = argparse.ArgumentParser(description="Create the stage's DynamoDB connections table.")
    parser.add_argument("--stage", default="dev", choices=stages())
    parser.add_argument("--region", help="AWS region (default: your AWS configuration's)")
    parser.add_argument("--profile", help="AWS profile (default: your AWS configuration's)")
    parser.add_argument("--endpoint-url", help="another DynamoDB, e.g. http://127.0.0.1:8002")
    parser.add_argument("--table-name", help="override the stage's CONNECTIONS_TABLE")
    parser.add_argument("--no-pitr", action="store_true", help="skip point-in-time recovery")
    args = parser.parse_args(argv)

    table_name = args.table_name or stage(args.stage).table_name
    if client is None:
        import boto3

        session = boto3.session.Session(profile_name=args.profile, region_name=args.region)
        if not session.region_name:
            print("no AWS region: pass --region or set AWS_REGION", file=sys.stderr)
            return 2
        client = session.client("dynamodb", endpoint_url=args.endpoint_url)
    created = ensure_table(client, table_name, pitr=not args.no_pitr)
    state = "created" if created else "already exists; TTL and point-in-time recovery checked"
    print(f"table {table_name}: {state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
