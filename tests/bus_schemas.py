"""The JSON Schemas of the back-end events' ``detail`` (docs/events/*.schema.json): one per
detail-type, checked against what the switchboard emits in the unit and e2e tiers."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from chalicelib.bus import DetailType

SCHEMA_DIR = Path(__file__).parents[1] / "docs" / "events"


def schema_name(detail_type: str) -> str:
    """``Connection Opened`` -> ``connection-opened``."""
    return re.sub(r"\s+", "-", detail_type.strip().lower())


@cache
def validator(detail_type: str) -> Draft202012Validator:
    path = SCHEMA_DIR / f"{schema_name(detail_type)}.schema.json"
    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def validate(detail_type: str, detail: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``detail`` is what the docs say."""
    validator(detail_type).validate(detail)


ALL = [str(t) for t in DetailType]
