"""``python -m deploy.create_table``: the stage's table from the schema, against moto."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from chalicelib.schema import load_schema
from deploy import create_table
from deploy.project import stage


@pytest.fixture
def client(aws_env: None) -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


@pytest.mark.parametrize("stage_name", ["dev", "prod"])
def test_creates_the_stage_table_from_the_schema(
    client: Any, stage_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert create_table.main(["--stage", stage_name], client=client) == 0
    name = stage(stage_name).table_name
    assert f"table {name}: created" in capsys.readouterr().out
    table = client.describe_table(TableName=name)["Table"]
    schema = load_schema()
    assert table["KeySchema"] == schema["KeySchema"]
    assert sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
        schema["AttributeDefinitions"], key=lambda a: a["AttributeName"]
    )
    gsis = {g["IndexName"]: g for g in table["GlobalSecondaryIndexes"]}
    for want in schema["GlobalSecondaryIndexes"]:
        assert gsis[want["IndexName"]]["KeySchema"] == want["KeySchema"]
        assert gsis[want["IndexName"]]["Projection"] == want["Projection"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "ttl"}
    backups = client.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
    assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_running_again_is_harmless(client: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert create_table.main(["--stage", "dev"], client=client) == 0
    assert create_table.main(["--stage", "dev"], client=client) == 0
    assert "already exists" in capsys.readouterr().out
    assert client.list_tables()["TableNames"] == [stage("dev").table_name]


def test_repairs_ttl_on_an_existing_table(client: Any) -> None:
    schema = load_schema()
    schema.pop("TimeToLiveAttribute")
    name = stage("dev").table_name
    client.create_table(TableName=name, **schema)
    assert create_table.ensure_table(client, name, pitr=False) is False
    ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] == "ENABLED"


def test_table_name_and_unknown_stage(client: Any) -> None:
    assert create_table.main(["--table-name", "mine", "--no-pitr"], client=client) == 0
    assert client.list_tables()["TableNames"] == ["mine"]
    with pytest.raises(SystemExit):
        create_table.main(["--stage", "nope"], client=client)


def test_needs_a_region(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for var in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert create_table.main(["--stage", "dev"]) == 2
