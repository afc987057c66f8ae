"""Within chalicelib only the table layer talks to DynamoDB; no module reads another's privates.

Walks the source of every chalicelib module (and app.py, and the shared test wiring in
tests/conftest.py for the private-attribute rule):

- only ``chalicelib/table.py`` calls DynamoDB operations, names DynamoDB's error codes,
  imports boto3's attribute-value (de)serializers or writes an attribute value (a dict whose
  one key is a DynamoDB type descriptor: ``{"S": ...}``, ``{"N": ...}``, ``{"SS": ...}`` ...);
- only ``chalicelib/table.py`` and ``chalicelib/wiring.py`` (which builds the boto3 client and
  hands it over) create a ``dynamodb`` client;
- no attribute starting with one underscore is read off anything but ``self`` or ``cls``.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CHALICELIB = sorted((ROOT / "chalicelib").glob("*.py"))
TABLE_LAYER = {"table.py"}
MAY_BUILD_CLIENT = {"table.py", "wiring.py"}

# The DynamoDB operations (botocore's dynamodb service model, snake_case as boto3 names them).
DYNAMODB_OPERATIONS = {
    "get_item", "put_item", "update_item", "delete_item", "query", "scan",
    "batch_get_item", "batch_write_item", "transact_get_items", "transact_write_items",
    "execute_statement", "batch_execute_statement", "execute_transaction",
    "describe_table", "create_table", "delete_table", "update_time_to_live",
}  # fmt: skip
# Every attribute value descriptor (AttributeValue in the DynamoDB API reference).
TYPE_DESCRIPTORS = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}
DYNAMODB_ERRORS = {"ConditionalCheckFailedException", "TransactionCanceledException"}


@cache
def trees() -> list[tuple[str, ast.Module]]:
    return [(p.name, ast.parse(p.read_text(encoding="utf-8"), str(p))) for p in CHALICELIB]


def dynamodb_uses(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            # A client call: an operation name taking DynamoDB's parameters (keywords).
            keywords = {k.arg for k in node.keywords}
            if node.func.attr in DYNAMODB_OPERATIONS and keywords & {
                "TableName", "RequestItems", "TransactItems", "Statement",
            }:  # fmt: skip
                found.append(f"line {node.lineno}: {ast.unparse(node.func)}(...)")
        if isinstance(node, ast.Dict) and len(node.keys) == 1:
            key = node.keys[0]
            if isinstance(key, ast.Constant) and key.value in TYPE_DESCRIPTORS:
                found.append(f"line {node.lineno}: attribute value {ast.unparse(node)}")
        if isinstance(node, ast.Attribute) and node.attr in DYNAMODB_ERRORS:
            found.append(f"line {node.lineno}: {node.attr}")
        if isinstance(node, ast.Constant) and node.value in DYNAMODB_ERRORS:
            found.append(f"line {node.lineno}: {node.value!r}")
        if isinstance(node, ast.ImportFrom) and (node.module or "") == "boto3.dynamodb.types":
            found.append(f"line {node.lineno}: imports {node.module}")
    return found


def client_builds(tree: ast.Module) -> list[str]:
    return [
        f"line {node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("client", "resource")
        and any(isinstance(a, ast.Constant) and a.value == "dynamodb" for a in node.args)
    ]


def private_reads(tree: ast.Module) -> list[str]:
    return [
        f"line {node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]


def test_the_walk_sees_the_table_layer_do_what_it_forbids_elsewhere() -> None:
    """The checks can fail: run on the table layer's own source they find its DynamoDB calls,
    and on a snippet they find a hand-written attribute value and a borrowed client."""
    [table] = [tree for name, tree in trees() if name == "table.py"]
    assert any("batch_write_item" in use for use in dynamodb_uses(table))
    snippet = ast.parse('registry._ddb.put_item(TableName=t, Item={"PK": {"S": "CONN#a"}})')
    assert len(dynamodb_uses(snippet)) == 2 and private_reads(snippet)
    assert client_builds(ast.parse('session.client("dynamodb")'))


@pytest.mark.parametrize("name", [p.name for p in CHALICELIB])
def test_only_the_table_layer_calls_dynamodb_or_writes_attribute_values(name: str) -> None:
    if name in TABLE_LAYER:
        return
    [tree] = [t for n, t in trees() if n == name]
    assert dynamodb_uses(tree) == []
    if name not in MAY_BUILD_CLIENT:
        assert client_builds(tree) == []


@pytest.mark.parametrize(
    "path",
    [*CHALICELIB, ROOT / "app.py", ROOT / "tests" / "conftest.py"],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_no_module_reads_another_objects_private_attributes(path: Path) -> None:
    assert private_reads(ast.parse(path.read_text(encoding="utf-8"))) == []
