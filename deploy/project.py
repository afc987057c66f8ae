"""The Chalice project as the deploy tooling sees it: stages and settings from config.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from chalice.config import Config

from chalicelib.schema import load_schema

PROJECT_DIR = Path(__file__).resolve().parent.parent
CHALICE_DIR = PROJECT_DIR / ".chalice"
CONFIG_PATH = CHALICE_DIR / "config.json"


@cache
def chalice_config() -> dict[str, Any]:
    with open(CONFIG_PATH, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def stages() -> list[str]:
    return sorted(chalice_config().get("stages", {}))


@dataclass(frozen=True)
class Stage:
    """What the tooling needs to know about one Chalice stage."""

    name: str
    app_name: str
    api_gateway_stage: str
    environment: dict[str, str]

    @property
    def table_name(self) -> str:
        """The table that ``chalice deploy`` users create (packaged stacks make their own)."""
        return self.environment["CONNECTIONS_TABLE"]

    @property
    def secret_parameter(self) -> str:
        return self.environment["JWT_SECRET_PARAMETER"]

    @property
    def continuation_queue(self) -> str:
        """The stage's continuation queue (``chalice deploy``; packaged stacks make their own)."""
        return self.environment["CONTINUATION_QUEUE_NAME"]


def stage(name: str) -> Stage:
    config = chalice_config()
    stages_config = config.get("stages", {})
    if name not in stages_config:
        raise SystemExit(f"unknown stage {name!r}; config.json has: {', '.join(stages())}")
    stage_config = stages_config[name]
    env = {str(k): str(v) for k, v in config.get("environment_variables", {}).items()}
    env.update({str(k): str(v) for k, v in stage_config.get("environment_variables", {}).items()})
    for required in ("CONNECTIONS_TABLE", "JWT_SECRET_PARAMETER", "CONTINUATION_QUEUE_NAME"):
        if not env.get(required):
            raise SystemExit(f"stage {name!r}: environment_variables lacks {required}")
    return Stage(
        name=name,
        app_name=str(config["app_name"]),
        api_gateway_stage=str(
            stage_config.get("api_gateway_stage", config.get("api_gateway_stage", "api"))
        ),
        environment=env,
    )


def iam_policy_file(stage_name: str, function_name: str) -> str | None:
    """The policy file ``chalice deploy`` attaches to one function's role, as Chalice reads it.

    Chalice's own lookup (``chalice.config.Config``): a stage's ``iam_policy_file`` wins over
    the top-level ``lambda_functions`` one, so per-function files belong under
    ``stages.<stage>.lambda_functions.<function>``.
    """
    config = Config(
        chalice_stage=stage_name, function_name=function_name, config_from_disk=chalice_config()
    )
    name = config.iam_policy_file
    return None if name is None else str(name)


def index_names() -> list[str]:
    """The table's global secondary indexes, from chalicelib/schema.json."""
    return [gsi["IndexName"] for gsi in load_schema().get("GlobalSecondaryIndexes", [])]
