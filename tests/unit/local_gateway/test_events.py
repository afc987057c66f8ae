"""local_gateway/events.py without a server: the rules file, finding a rule's target function,
the sink and its page (the bus itself is exercised by tests/e2e/test_bus.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from local_gateway.events import LocalEvents, lambda_function, load_rules
from local_gateway.sigv4 import Credentials

REPO = Path(__file__).resolve().parents[3]


def sink() -> LocalEvents:
    return LocalEvents("http://127.0.0.1:9", "us-east-1", Credentials.generate())


def event(detail_type: str, n: int) -> dict[str, Any]:
    return {"source": "switchboard", "detail-type": detail_type, "detail": {"n": n}}


def test_the_projects_rules_file_is_read_and_a_missing_one_is_no_rules(tmp_path: Path) -> None:
    [rule] = load_rules(REPO / "deploy" / "event_rules.json")
    assert (rule["name"], rule["function"]) == ("push-undelivered", "push_notifier")
    assert load_rules(tmp_path / "none.json") == []


def test_a_rule_finds_the_apps_lambda_function_by_its_chalice_name() -> None:
    import app

    handler = lambda_function(app.app, "push_notifier")
    assert handler is not None and handler.__name__ == "push_notifier"
    assert lambda_function(app.app, "no_such_function") is None


def test_the_page_lists_the_sink_in_order_and_filters_by_detail_type() -> None:
    events = sink()
    for n, kind in enumerate(("Connection Opened", "Message Undelivered", "Connection Opened")):
        events.keep(event(kind, n))
    status, headers, body = events.page("detailType=Connection%20Opened")
    page = json.loads(body)
    assert (status, headers) == (200, [("Content-Type", "application/json")])
    assert [e["detail"]["n"] for e in page["events"]] == [0, 2]
    assert len(json.loads(events.page("")[2])["events"]) == 3


def test_wait_for_returns_a_later_event_and_times_out_without_one() -> None:
    events = sink()
    later = threading.Timer(0.05, lambda: events.keep(event("Presence Left", 7)))
    later.start()
    found = events.wait_for(lambda e: e["detail-type"] == "Presence Left", timeout=5)
    assert found["detail"] == {"n": 7}
    with pytest.raises(TimeoutError):
        events.wait_for(lambda e: e["detail-type"] == "Nothing", timeout=0.05)


def test_the_sink_keeps_the_newest_events_only() -> None:
    events = LocalEvents("http://127.0.0.1:9", "us-east-1", Credentials.generate(), sink_size=3)
    for n in range(5):
        events.keep(event("Connection Opened", n))
    assert [e["detail"]["n"] for e in events.events()] == [2, 3, 4]
