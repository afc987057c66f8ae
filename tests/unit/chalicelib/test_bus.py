"""chalicelib/bus.py: batching, cutting to size, failed entries resent then counted; the events
the switchboard emits on the in-memory table (which path, which detail)."""

from __future__ import annotations

import io
import json
import logging
from collections import deque
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import Stubber
from jsonschema import ValidationError

from chalicelib.broadcaster import Broadcaster
from chalicelib.bus import (
    BATCH_MAX_ENTRIES,
    ENTRY_MAX_BYTES,
    BusEvent,
    ClosedBy,
    DetailType,
    Events,
    Publisher,
    batches,
    entry_size,
    to_entry,
)
from chalicelib.config import EndpointRule, Settings
from chalicelib.management_api import Outcome
from chalicelib.message import Message
from chalicelib.message_log import MessageLog
from chalicelib.namespaces import parse as parse_namespaces
from chalicelib.protocol import Scope
from chalicelib.service import Switchboard
from tests import bus_schemas
from tests.conftest import TABLE, Clock
from tests.helpers import FakeGateway, connect_event, disconnect_event, message_event
from tests.unit.chalicelib import memory
from tests.unit.chalicelib.memory import START

Answer = dict[str, Any] | Exception


class FakeEventsClient:
    """A boto3 ``events`` client that records each PutEvents call and answers from a queue
    (default: every entry accepted)."""

    def __init__(self, *answers: Answer | Any) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.answers: deque[Any] = deque(answers)

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 - boto3's name
        assert 1 <= len(Entries) <= BATCH_MAX_ENTRIES  # PutEvents' own constraint
        self.calls.append(list(Entries))
        answer = self.answers.popleft() if self.answers else None
        if callable(answer):
            answer = answer(Entries)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            return ok(len(Entries))
        return dict(answer)

    def details(self) -> list[dict[str, Any]]:
        return [json.loads(e["Detail"]) for call in self.calls for e in call]

    def types(self) -> list[str]:
        return [e["DetailType"] for call in self.calls for e in call]


def ok(n: int) -> dict[str, Any]:
    return {"FailedEntryCount": 0, "Entries": [{"EventId": f"e{i}"} for i in range(n)]}


def failing(indexes: set[int], code: str = "InternalFailure") -> Any:
    """An answer failing the entries at ``indexes`` of the call it answers."""

    def answer(entries: list[dict[str, Any]]) -> dict[str, Any]:
        out = [
            {"ErrorCode": code, "ErrorMessage": "try again"} if i in indexes else {"EventId": "e"}
            for i in range(len(entries))
        ]
        return {
            "FailedEntryCount": sum(1 for i in range(len(entries)) if i in indexes),
            "Entries": out,
        }

    return answer


def event(n: int, preview: str = "hi") -> BusEvent:
    return BusEvent(
        "Message Undelivered", {"eventId": f"undelivered:user:u:{n}", "preview": preview}, 1.0
    )


def publisher(client: Any, metrics: io.StringIO | None = None) -> Publisher:
    return Publisher(client, "bus", sleep=lambda s: None, metrics_out=metrics or io.StringIO())


# --- batching and size ---------------------------------------------------------------------


def test_entries_go_ten_per_call_in_order() -> None:
    client = FakeEventsClient()
    result = publisher(client).publish([event(n) for n in range(23)])
    assert [len(c) for c in client.calls] == [10, 10, 3]
    assert [d["eventId"] for d in client.details()] == [
        f"undelivered:user:u:{n}" for n in range(23)
    ]
    assert (result.sent, result.failed, result.calls) == (23, 0, 3)


def test_a_call_never_carries_more_than_256_kb_of_entries() -> None:
    big = "x" * 100_000  # three of these do not fit one call
    client = FakeEventsClient()
    publisher(client).publish([event(n, big) for n in range(5)])
    assert [len(c) for c in client.calls] == [2, 2, 1]
    assert all(sum(entry_size(e) for e in call) <= ENTRY_MAX_BYTES for call in client.calls)


def test_batches_split_by_count_and_by_size() -> None:
    small = to_entry(event(0), "bus")[0]
    assert batches([small] * 21) == [list(range(10)), list(range(10, 20)), [20]]
    assert batches([small] * 3, limit=entry_size(small) * 2) == [[0, 1], [2]]


def test_entry_size_counts_as_eventbridge_does() -> None:
    # "Calculating PutEvents event entry size": Time 14 bytes, the rest their UTF-8 bytes.
    entry = {
        "Time": 1.0,
        "Source": "switchboard",
        "DetailType": "Connection Opened",
        "Detail": '{"a":"é"}',
    }
    assert entry_size(entry) == 14 + 11 + 17 + len('{"a":"é"}'.encode())
    assert entry_size({k: v for k, v in entry.items() if k != "Time"}) == 11 + 17 + 10


def test_an_entry_over_the_limit_is_cut_down_not_dropped() -> None:
    # Quotes and control characters cost more as JSON than as UTF-8: the cut measures again.
    preview = ('"\x01é' * 100_000)[:300_000]
    entry, cut = to_entry(event(1, preview), "bus")
    detail = json.loads(entry["Detail"])
    assert cut and detail["truncated"] is True and detail["eventId"] == "undelivered:user:u:1"
    assert ENTRY_MAX_BYTES - 64 <= entry_size(entry) <= ENTRY_MAX_BYTES
    assert preview.startswith(detail["preview"]) and len(detail["preview"]) > 1000


def test_data_is_dropped_to_null_when_the_text_alone_cannot_make_room() -> None:
    detail = {"eventId": "published:room:a:1", "text": "t", "data": {"blob": "y" * 300_000}}
    entry, cut = to_entry(BusEvent("Message Published", detail, 1.0), "bus")
    out = json.loads(entry["Detail"])
    assert cut and out["data"] is None and out["text"] == "t" and out["truncated"] is True


def test_a_cut_entry_is_sent_and_counted() -> None:
    client = FakeEventsClient()
    metrics = io.StringIO()
    result = publisher(client, metrics).publish([event(1, "z" * 300_000), event(2)])
    assert (result.sent, result.cut, result.failed) == (2, 1, 0)
    line = json.loads(metrics.getvalue())
    assert (line["EventsSent"], line["EventsCut"], line["EventsFailed"]) == (2, 1, 0)


# --- failures ----------------------------------------------------------------------------


def test_failed_entries_are_resent_until_accepted() -> None:
    client = FakeEventsClient(failing({1, 3}), failing({0}))
    result = publisher(client).publish([event(n) for n in range(4)])
    sent_ids = [[json.loads(e["Detail"])["eventId"][-1] for e in call] for call in client.calls]
    assert sent_ids == [["0", "1", "2", "3"], ["1", "3"], ["1"]]
    assert (result.sent, result.failed, result.calls) == (4, 0, 3)


def test_entries_failing_every_attempt_are_counted_logged_and_in_the_metrics(
    caplog: pytest.LogCaptureFixture,
) -> None:
    always = failing({0}, "ThrottlingException")
    client = FakeEventsClient(always, always, always, always)
    metrics = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="switchboard"):
        result = publisher(client, metrics).publish([event(7), event(8)])
    assert len(client.calls) == 4  # the first call and resend_attempts (3) resends
    assert (result.sent, result.failed) == (1, 1)
    [logged] = [
        json.loads(r.getMessage()) for r in caplog.records if "events_failed" in r.getMessage()
    ]
    assert logged["entries"] == [
        {
            "detailType": "Message Undelivered",
            "eventId": "undelivered:user:u:7",
            "error": "ThrottlingException",
        }
    ]
    line = json.loads(metrics.getvalue())
    assert line["EventsFailed"] == 1 and line["PutEventsCalls"] == 4
    assert {m["Name"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]} >= {
        "EventsFailed",
        "EventsSent",
    }


def test_a_call_that_raises_fails_its_whole_batch_and_is_retried() -> None:
    denied = ClientError({"Error": {"Code": "InternalException", "Message": "x"}}, "PutEvents")
    timeout = ReadTimeoutError(endpoint_url="http://events")
    client = FakeEventsClient(denied, timeout)
    result = publisher(client).publish([event(1), event(2)])
    assert (result.sent, result.failed, len(client.calls)) == (2, 0, 3)


def test_a_call_that_always_raises_never_raises_out() -> None:
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "x"}}, "PutEvents")
    client = FakeEventsClient(*([denied] * 4))
    result = publisher(client).publish([event(1)])
    assert result.failed == 1 and result.errors[0]["error"] == "AccessDeniedException"


def test_the_request_is_what_the_putevents_model_accepts() -> None:
    """botocore's Stubber validates the request against the service model."""
    client = boto3.client("events", region_name="us-east-1")
    with Stubber(client) as stub:
        expected = {
            "Entries": [
                {
                    "Time": 1.0,
                    "Source": "switchboard",
                    "DetailType": "Message Undelivered",
                    "Detail": '{"eventId":"undelivered:user:u:1","preview":"hi"}',
                    "EventBusName": "bus",
                }
            ]
        }
        stub.add_response(
            "put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}, expected
        )
        result = publisher(client).publish([event(1)])
        stub.assert_no_pending_responses()
    assert result.sent == 1


# --- Events: collected, flushed once ------------------------------------------------------


def test_without_a_bus_nothing_is_collected() -> None:
    events = Events()
    events.connection_opened("c", "u", 1)
    assert events.pending() == [] and events.flush() is None


def test_flush_sends_what_was_emitted_once() -> None:
    client = FakeEventsClient()
    events = Events(publisher(client), clock=lambda: START)
    events.connection_opened("c1", "u1", 5)
    events.connection_closed("c1", "u1", int(START * 1000) - 1500, ClosedBy.KICKED)
    assert client.calls == []  # nothing is sent before the flush
    assert events.flush() is not None and events.flush() is None
    opened, closed = client.details()
    assert opened == {
        "eventId": "opened:c1",
        "connectionId": "c1",
        "userId": "u1",
        "connectedAt": 5,
    }
    assert (
        closed["reason"] == "kicked"
        and closed["durationMs"] == 1500
        and closed["closeCode"] is None
    )


def test_rooms_emit_what_their_namespace_says() -> None:
    client = FakeEventsClient()
    events = Events(publisher(client), emits=lambda room, kind: room.startswith("pub:"))
    events.presence("lobby", "enter", "u", "room:lobby", 1)
    events.presence("pub:x", "leave", "u", "room:pub:x", 2)
    events.flush()
    assert client.types() == ["Presence Left"]


# --- the switchboard's events, on the in-memory table --------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


class World:
    def __init__(self, clock: Clock, emits: Any = None, namespaces: Any = None) -> None:
        self.clock = clock
        self.gateway = FakeGateway()
        self.client = FakeEventsClient()
        registry = memory.registry(clock)
        settings = Settings(
            table_name=TABLE,
            auth_mode="none",
            fanout_workers=4,
            endpoint_rule=EndpointRule.from_env(),
            event_bus_name="bus",
            event_preview_chars=5,
            namespaces=namespaces,
        )
        kwargs = {"emits": emits} if emits else {}
        self.events = Events(publisher(self.client), preview_chars=5, clock=clock, **kwargs)
        self.sb = Switchboard(
            settings,
            registry,
            self.gateway,  # type: ignore[arg-type]
            Broadcaster(self.gateway),  # type: ignore[arg-type]
            MessageLog(registry.table, 3600),
            events=self.events,
        )

    def connect(self, cid: str, user: str) -> None:
        event = connect_event(cid, {"userId": user})
        event["requestContext"]["connectedAt"] = memory.ms(self.clock)
        assert self.sb.on_connect(event).status == 200

    def send(self, cid: str, frame: dict[str, Any]) -> None:
        self.sb.on_message(message_event(cid, frame))

    def of(self, detail_type: DetailType) -> list[dict[str, Any]]:
        """The details of that type sent so far, each checked against its documented schema."""
        details = [
            json.loads(e["Detail"])
            for call in self.client.calls
            for e in call
            if e["DetailType"] == detail_type
        ]
        for detail in details:
            bus_schemas.validate(detail_type, detail)
        return details


def test_connect_and_disconnect_emit_opened_and_closed_with_the_close_code(clock: Clock) -> None:
    w = World(clock)
    w.connect("a", "u_a")
    assert len(w.client.calls) == 1  # flushed before the handshake's answer
    clock.now += 2.5
    w.sb.on_disconnect(disconnect_event("a", 1001))
    w.sb.on_disconnect(disconnect_event("a", 1001))  # a repeat removes nothing: no event
    [opened] = w.of(DetailType.CONNECTION_OPENED)
    [closed] = w.of(DetailType.CONNECTION_CLOSED)
    assert opened["connectedAt"] == memory.ms(clock) - 2500
    assert (closed["eventId"], closed["reason"], closed["closeCode"], closed["durationMs"]) == (
        "closed:a", "disconnect", 1001, 2500,
    )  # fmt: skip


def test_a_connection_pruned_on_410_is_closed_as_gone_and_its_leave_emitted(clock: Clock) -> None:
    w = World(clock)
    for cid, user in (("a", "u_a"), ("b", "u_b")):
        w.connect(cid, user)
        w.send(cid, {"action": "join", "room": "lobby"})
    w.gateway.outcomes["b"] = Outcome.GONE
    w.send("a", {"action": "sendRoom", "room": "lobby", "text": "hi"})
    [closed] = w.of(DetailType.CONNECTION_CLOSED)
    assert (closed["connectionId"], closed["reason"], closed["userId"]) == ("b", "gone", "u_b")
    assert [(p["userId"], p["room"]) for p in w.of(DetailType.PRESENCE_ENTERED)] == [
        ("u_a", "lobby"), ("u_b", "lobby"),
    ]  # fmt: skip
    [left] = w.of(DetailType.PRESENCE_LEFT)
    assert left["userId"] == "u_b" and left["epoch"]
    assert left["eventId"] == f"presence:room:lobby:{left['epoch']}:{left['seq']}"
    assert w.of(DetailType.MESSAGE_PUBLISHED) == []  # the default namespace does not publish


def test_kick_and_expiry_say_so(clock: Clock) -> None:
    w = World(clock)
    w.connect("a", "u_a")
    w.sb.kick("a")
    w.sb.on_disconnect(disconnect_event("a", 1000))  # the close's own $disconnect: nothing left
    assert [(c["connectionId"], c["reason"]) for c in w.of(DetailType.CONNECTION_CLOSED)] == [
        ("a", "kicked")
    ]


def test_a_direct_message_to_nobody_is_undelivered_with_a_bounded_preview(clock: Clock) -> None:
    w = World(clock)
    w.connect("a", "u_a")
    w.send("a", {"action": "sendMessage", "targetUserId": "u_off", "text": "hello there"})
    [undelivered] = w.of(DetailType.MESSAGE_UNDELIVERED)
    assert undelivered == {
        "eventId": f"undelivered:user:u_off:{undelivered['epoch']}:1",
        "messageId": undelivered["messageId"],
        "stream": "user:u_off",
        "seq": 1,
        "epoch": undelivered["epoch"],
        "from": "u_a",
        "to": "u_off",
        "event": "message",
        "reason": "no_connections",
        "preview": "hello",
        "previewTruncated": True,
        "sentAt": undelivered["sentAt"],
    }


def test_a_direct_message_whose_every_post_is_gone_is_undelivered(clock: Clock) -> None:
    w = World(clock)
    w.connect("a", "u_a")
    w.connect("b1", "u_b")
    w.connect("b2", "u_b")
    w.gateway.outcomes.update(b1=Outcome.GONE, b2=Outcome.GONE)
    w.send("a", {"action": "sendMessage", "targetUserId": "u_b", "text": "hi"})
    assert [u["reason"] for u in w.of(DetailType.MESSAGE_UNDELIVERED)] == ["gone"]
    assert sorted(c["connectionId"] for c in w.of(DetailType.CONNECTION_CLOSED)) == ["b1", "b2"]


def test_a_direct_message_that_reached_one_connection_is_not_undelivered(clock: Clock) -> None:
    w = World(clock)
    w.connect("a", "u_a")
    w.connect("b1", "u_b")
    w.connect("b2", "u_b")
    w.gateway.outcomes["b1"] = Outcome.GONE
    w.send("a", {"action": "sendMessage", "targetUserId": "u_b", "text": "hi"})
    w.send("a", {"action": "sendMessage", "targetUserId": "u_a", "text": "me"})  # self: no
    assert w.of(DetailType.MESSAGE_UNDELIVERED) == []


def test_an_opted_in_room_publishes_its_messages(clock: Clock) -> None:
    """The namespace's ``events`` option: ``archive:`` rooms publish, the default does not."""
    document = {"namespaces": {"archive": {"events": ["presence", "published"]}}}
    w = World(clock, namespaces=parse_namespaces(document))
    w.connect("a", "u_a")
    w.send("a", {"action": "join", "room": "archive:x"})
    w.send("a", {"action": "join", "room": "lobby"})
    w.send("a", {"action": "sendRoom", "room": "archive:x", "text": "kept"})
    w.send("a", {"action": "sendRoom", "room": "lobby", "text": "not"})
    [published] = w.of(DetailType.MESSAGE_PUBLISHED)
    assert (published["room"], published["text"], published["from"]) == ("archive:x", "kept", "u_a")
    assert published["epoch"] and published["eventId"] == (
        f"published:room:archive:x:{published['epoch']}:{published['seq']}"
    )


def test_events_are_sent_after_the_reply_is_posted(clock: Clock) -> None:
    w = World(clock)
    w.connect("a", "u_a")
    order: list[str] = []
    post = w.gateway.post

    def recording_post(cid: str, data: bytes, endpoint: str | None = None) -> Outcome:
        order.append("post")
        return post(cid, data, endpoint)

    w.gateway.post = recording_post  # type: ignore[method-assign]
    w.client.answers.append(lambda entries: order.append("put_events") or ok(len(entries)))
    w.send("a", {"action": "sendMessage", "targetUserId": "u_off", "text": "x", "ref": 1})
    assert order == ["post", "put_events"]


# --- the documented schemas ------------------------------------------------------------------


@pytest.mark.parametrize("detail_type", bus_schemas.ALL)
def test_every_detail_type_has_a_valid_schema_that_refuses_unknown_members(
    detail_type: str,
) -> None:
    validator = bus_schemas.validator(detail_type)  # check_schema ran
    assert validator.schema["additionalProperties"] is False
    with pytest.raises(ValidationError):
        bus_schemas.validate(detail_type, {"eventId": "x", "surprise": 1})
    # The registry export (draft 4, the whole event) refuses it too, and a wrong detail-type.
    registry = bus_schemas.registry_validator(detail_type)
    assert registry.schema["properties"]["detail"]["additionalProperties"] is False
    with pytest.raises(ValidationError):
        registry.validate({"source": "switchboard", "detail-type": "Other", "detail": {}})


def test_a_cut_detail_still_matches_its_schema() -> None:
    client = FakeEventsClient()
    events = Events(publisher(client), preview_chars=400_000)
    message = Message.new("u_a", Scope.USER, '"é' * 150_000).logged("user:u_b", 9)
    events.undelivered(message, "u_b", "no_connections")
    events.flush()
    [detail] = client.details()
    bus_schemas.validate("Message Undelivered", detail)
    assert detail["truncated"] is True and detail["previewTruncated"] is False
    assert 100_000 < len(detail["preview"]) < 150_000


def test_the_stage_setting_turns_events_on_and_off() -> None:
    from chalicelib.wiring import build_events

    session = boto3.session.Session(region_name="us-east-1")
    base = {"table_name": TABLE, "auth_mode": "none", "endpoint_rule": EndpointRule.from_env()}
    assert not build_events(Settings(**base), session).enabled
    on = build_events(Settings(**base, event_bus_name="sb-dev", event_preview_chars=7), session)
    assert on.enabled and on.publisher is not None
    assert (on.publisher.bus_name, on.preview_chars) == ("sb-dev", 7)
    assert Settings.from_env({"CONNECTIONS_TABLE": "t", "AUTH_MODE": "none"}).event_bus_name is None


def test_a_large_flush_sends_its_batches_side_by_side_and_resends_across_them() -> None:
    import threading

    seen_threads: set[str] = set()
    lock = threading.Lock()

    class Recording(FakeEventsClient):
        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
            with lock:
                seen_threads.add(threading.current_thread().name)
                return super().put_events(Entries)

    # Every call's first entry fails once: the resends gather them from every batch.
    client = Recording(*([failing({0})] * 5))
    result = publisher(client).publish([event(n) for n in range(45)])
    assert (result.sent, result.failed) == (45, 0)
    assert result.calls == len(client.calls) == 5 + 1  # 5 batches, then one resend of 5
    assert len(client.calls[-1]) == 5
    assert sorted(d["eventId"] for d in client.details()[:45]) == sorted(
        f"undelivered:user:u:{n}" for n in range(45)
    )
    assert any(name.startswith("put-events") for name in seen_threads)  # the 5 first, pooled


def test_an_event_with_data_only_is_previewed_from_its_data_and_named(clock: Clock) -> None:
    w = World(clock)
    w.connect("a", "u_a")
    frame = {"action": "sendMessage", "targetUserId": "u_off", "event": "order.shipped"}
    w.send("a", {**frame, "data": {"order": 42}})
    [undelivered] = w.of(DetailType.MESSAGE_UNDELIVERED)
    assert (undelivered["event"], undelivered["preview"]) == ("order.shipped", '{"ord')
    assert undelivered["previewTruncated"] is True


def test_an_ephemeral_dm_to_nobody_is_not_undelivered(clock: Clock) -> None:
    w = World(clock)
    w.connect("a", "u_a")
    typing = {"action": "sendMessage", "targetUserId": "u_off", "event": "typing"}
    w.send("a", {**typing, "data": True, "ephemeral": True})
    assert w.of(DetailType.MESSAGE_UNDELIVERED) == []
    assert w.gateway.frames("a")[-1]["type"] == "ack"  # it was accepted, just not stored


def test_the_namespace_events_option_is_validated_and_inherited() -> None:
    from chalicelib.config import ConfigError

    parsed = parse_namespaces(
        {"namespaces": {"default": {"events": []}, "archive": {"events": ["published"]}}}
    )
    assert parsed.of("lobby").events == frozenset()
    assert parsed.of("archive:x").events == {"published"}
    assert parse_namespaces({"namespaces": {}}).of("lobby").events == {"presence"}
    with pytest.raises(ConfigError, match=r"namespaces\.archive\.events"):
        parse_namespaces({"namespaces": {"archive": {"events": ["everything"]}}})
