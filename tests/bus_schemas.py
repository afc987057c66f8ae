"""The JSON Schemas of the back-end events' ``detail`` (docs/events/*.schema.json): one per
detail-type, checked against what the switchboard emits in the unit and e2e tiers."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, Draft202012Validator

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
    """Raise ``jsonschema.ValidationError`` unless ``detail`` is what the docs say, and the
    whole event is what the template's schema registry export says."""
    validator(detail_type).validate(detail)
    envelope = {"source": "switchboard", "detail-type": detail_type, "detail": detail}
    registry_validator(detail_type).validate(envelope)


@cache
def registry_validator(detail_type: str) -> Draft4Validator:
    """The draft-4 schema the template registers for ``detail_type`` (deploy/template.py)."""
    from deploy.template import event_schemas

    schema = event_schemas()[detail_type]
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


ALL = [str(t) for t in DetailType]
