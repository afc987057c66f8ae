"""One CloudWatch Embedded Metric Format (EMF) line per fan-out.

CloudWatch Logs turns a log line that is a JSON object with an ``_aws`` member into metrics,
with no PutMetricData call ("Specification: Embedded metric format", CloudWatch user guide:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
The spec's required keys: ``_aws.Timestamp`` (epoch ms) and ``_aws.CloudWatchMetrics``, a list
of directives each with ``Namespace``, ``Dimensions`` (a list of dimension sets, each a list
of member names) and ``Metrics`` (``Name`` and optional ``Unit``); every name in a dimension
set or a metric must be a member of the root object holding its value.

The line is written to stdout on its own (not through the ``switchboard`` logger, whose level
an operator may raise): in Lambda, each stdout line is one CloudWatch log event.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Protocol, TextIO

NAMESPACE = "Switchboard"
# By scope, and (the empty dimension set) across scopes: what the template's alarms watch.
DIMENSIONS: list[list[str]] = [["Scope"], []]
# Report attribute -> (metric name, unit).
METRICS = (
    ("recipients", "Recipients", "Count"),
    ("delivered", "Delivered", "Count"),
    ("gone", "Gone", "Count"),
    ("failed", "Failed", "Count"),
    ("throttled", "Throttled", "Count"),
    ("continued", "Continued", "Count"),
    ("duration_ms", "DurationMs", "Milliseconds"),
)


def fanout_line(
    scope: str | None, values: dict[str, float], now_ms: int | None = None, **extra: Any
) -> dict[str, Any]:
    """The EMF object for one fan-out: ``values`` by report attribute (missing ones are 0);
    ``extra`` adds plain members (stream, seq, hop) that are searchable but not metrics."""
    line: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000) if now_ms is None else now_ms,
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": DIMENSIONS,
                    "Metrics": [{"Name": name, "Unit": unit} for _, name, unit in METRICS],
                }
            ],
        },
        "Scope": scope or "unknown",
        "event": "fanout_metrics",
        **extra,
    }
    for attribute, name, _ in METRICS:
        line[name] = values.get(attribute, 0)
    return line


def emit_fanout(
    scope: str | None, values: dict[str, float], out: TextIO | None = None, **extra: Any
) -> None:
    stream = out or sys.stdout
    stream.write(json.dumps(fanout_line(scope, values, **extra), separators=(",", ":")) + "\n")
    stream.flush()


class FanoutCounts(Protocol):
    """What a fan-out's line is made of (``broadcaster.Report`` has these, read-only)."""

    @property
    def recipients(self) -> int: ...

    @property
    def delivered(self) -> int: ...

    @property
    def gone(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def throttled(self) -> int: ...

    @property
    def continued(self) -> int: ...

    @property
    def duration_ms(self) -> float: ...


def emit_report(report: FanoutCounts, scope: str | None, **extra: Any) -> None:
    """The EMF line of one fan-out's report (``extra``: stream, seq, hop)."""
    values = {attribute: getattr(report, attribute) for attribute, _, _ in METRICS}
    emit_fanout(scope, values, **extra)
