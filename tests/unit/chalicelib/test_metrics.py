"""The fan-out's EMF line: one JSON line with the specification's required keys."""

from __future__ import annotations

import io
import json

from chalicelib import metrics


def test_fanout_line_is_one_json_line_with_the_emf_required_keys() -> None:
    out = io.StringIO()
    values = {"recipients": 5, "delivered": 3, "failed": 1, "throttled": 1, "continued": 1}
    metrics.emit_fanout("room", {**values, "duration_ms": 12.5}, out=out, stream="room:a")
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    line = json.loads(text)
    aws = line["_aws"]
    assert isinstance(aws["Timestamp"], int) and aws["Timestamp"] > 1_600_000_000_000
    (directive,) = aws["CloudWatchMetrics"]
    assert directive["Namespace"] == "Switchboard"
    # Every dimension and metric a directive names is a member of the root, with a value.
    for dimension_set in directive["Dimensions"]:
        assert all(isinstance(line[name], str) for name in dimension_set)
    names = [m["Name"] for m in directive["Metrics"]]
    assert names == [
        "Recipients", "Delivered", "Gone", "Failed", "Throttled", "Continued", "DurationMs",
    ]  # fmt: skip
    assert all(isinstance(line[n], int | float) for n in names)
    assert (line["Recipients"], line["Gone"], line["Throttled"], line["DurationMs"]) == (
        5, 0, 1, 12.5,
    )  # fmt: skip
    assert line["Scope"] == "room" and line["stream"] == "room:a"
