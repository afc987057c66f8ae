"""Embedded EventBridge for the app's back-end events: a bus, its rules, and a sink to look at.

moto's server (the embedded DynamoDB's port serves every service) has EventBridge, SQS and SNS.
At start, when events are on, the gateway:

- creates the bus the app publishes to (``EVENT_BUS_NAME``, set for the app) and a catch-all
  rule (every event on the bus) into a sink queue; a poller keeps each event it receives, in
  order, served as JSON at ``GET /events`` on the WebSocket port (the banner prints the URL) and
  by ``LocalEvents.events()`` / ``wait_for()`` for tests;
- creates each rule of the rules file (``deploy/event_rules.json``: name, pattern, the app
  function it targets) with an SQS queue as its target, since moto's EventBridge cannot invoke
  a Lambda (its targets are SQS, CloudWatch Logs, archives, buses and API destinations); a
  poller per rule invokes the app's ``@app.lambda_function`` of that name in-process with the
  event itself, as EventBridge invokes a Lambda target asynchronously ("Amazon EventBridge
  targets": the function gets the event JSON as its input);
- creates SNS platform applications (APNs, APNs sandbox, FCM) for the push notifier and gives
  their ARNs to the app (``PUSH_*_APPLICATION_ARN``) unless its environment names others:
  moto's SNS accepts endpoints and publishes and keeps the messages, so the whole path from a
  message to a "notification" runs offline.

An event rule target that raises is logged and recorded in the invocation log; EventBridge's
own retries and dead-letter queue are not emulated.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from local_gateway.lambda_events import LambdaContext
from local_gateway.lambda_runtime import Invocation
from local_gateway.sigv4 import Credentials

log = logging.getLogger("local_gateway.events")

DEFAULT_BUS = "switchboard-local"
DEFAULT_RULES = Path("deploy") / "event_rules.json"
SINK_QUEUE = "local-events-sink"
ROUTE_PREFIX = "events:"  # Invocation.route_key of a rule target: "events:<rule name>"
# Our platform names -> (SNS platform, the app's setting).
PLATFORMS = {
    "APNS": "PUSH_APNS_APPLICATION_ARN",
    "APNS_SANDBOX": "PUSH_APNS_SANDBOX_APPLICATION_ARN",
    "GCM": "PUSH_FCM_APPLICATION_ARN",
}


def load_rules(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rules: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8")).get("rules", [])
    return rules


def lambda_function(app: Any, name: str) -> Callable[[dict[str, Any], Any], Any] | None:
    """The app's ``@app.lambda_function(name=...)`` handler, or None."""
    for function in getattr(app, "pure_lambda_functions", []):
        if function.name == name:
            return function.func  # type: ignore[no-any-return]
    return None


class LocalEvents:
    """The bus, rules, sink and platform applications on the embedded moto server."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Credentials,
        bus_name: str = DEFAULT_BUS,
        rules_path: Path | None = None,
        sink_size: int = 5000,
        idle_seconds: float = 0.02,
    ) -> None:
        import boto3

        session = boto3.session.Session(
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            region_name=region,
        )
        self.endpoint = endpoint
        self.region = region
        self.bus_name = bus_name
        self.rules = load_rules(rules_path) if rules_path else []
        self._events = session.client("events", endpoint_url=endpoint)
        self._sqs = session.client("sqs", endpoint_url=endpoint)
        self._sns = session.client("sns", endpoint_url=endpoint)
        self._sink: list[dict[str, Any]] = []
        self._sink_size = sink_size
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._idle = idle_seconds

    # --- set-up (before the app is imported) -----------------------------------------------

    def create(self, app_env: dict[str, str]) -> dict[str, str]:
        """Create the bus, the sink and the rules' queues, and the platform applications; the
        environment the app needs (its bus, the push applications it does not name)."""
        if self.bus_name != "default":
            self._events.create_event_bus(Name=self.bus_name)
        self._route("local-sink", {"source": [{"exists": True}]}, SINK_QUEUE)
        for rule in self.rules:
            self._route(rule["name"], rule["pattern"], f"local-rule-{rule['name']}")
        env = {"EVENT_BUS_NAME": self.bus_name}
        for platform, setting in PLATFORMS.items():
            if not app_env.get(setting):
                answer = self._sns.create_platform_application(
                    Name="switchboard-local", Platform=platform, Attributes={}
                )
                env[setting] = answer["PlatformApplicationArn"]
        return env

    def _route(self, rule: str, pattern: dict[str, Any], queue: str) -> None:
        url = self._sqs.create_queue(QueueName=queue)["QueueUrl"]
        arn = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        self._events.put_rule(
            Name=rule, EventBusName=self.bus_name, EventPattern=json.dumps(pattern)
        )
        self._events.put_targets(
            Rule=rule,
            EventBusName=self.bus_name,
            Targets=[{"Id": queue, "Arn": arn["Attributes"]["QueueArn"]}],
        )

    # --- running (after the app is imported) -----------------------------------------------

    def start(
        self,
        app: Any,
        context: Callable[[str], LambdaContext],
        on_invocation: Callable[[Invocation], None],
    ) -> None:
        self._poll(SINK_QUEUE, self.keep)
        for rule in self.rules:
            handler = lambda_function(app, rule["function"])
            if handler is None:
                log.warning(
                    "event rule %s targets %r, which app.py does not define as a "
                    "@app.lambda_function: its events are only in the sink",
                    rule["name"],
                    rule["function"],
                )
                continue
            invoke = self._invoker(rule["name"], rule["function"], handler, context, on_invocation)
            self._poll(f"local-rule-{rule['name']}", invoke)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads = []

    def _poll(self, queue: str, handle: Callable[[dict[str, Any]], None]) -> None:
        url = self._sqs.get_queue_url(QueueName=queue)["QueueUrl"]

        def run() -> None:
            while not self._stop.is_set():
                try:
                    messages = self._sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
                        "Messages", []
                    )
                except Exception:  # noqa: BLE001 - the server may be stopping
                    log.debug("events poll failed", exc_info=True)
                    messages = []
                for message in messages:
                    try:
                        handle(json.loads(message["Body"]))
                    finally:
                        self._sqs.delete_message(
                            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                        )
                if not messages:
                    self._stop.wait(self._idle)

        thread = threading.Thread(target=run, name=f"events-{queue}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def keep(self, event: dict[str, Any]) -> None:
        """Add an event to the sink (the sink queue's poller calls this), the oldest dropped
        past ``sink_size``."""
        with self._cond:
            self._sink.append(event)
            del self._sink[: -self._sink_size]
            self._cond.notify_all()

    def _invoker(
        self,
        rule: str,
        name: str,
        handler: Callable[[dict[str, Any], Any], Any],
        context: Callable[[str], LambdaContext],
        on_invocation: Callable[[Invocation], None],
    ) -> Callable[[dict[str, Any]], None]:
        def invoke(event: dict[str, Any]) -> None:
            record = Invocation(route_key=ROUTE_PREFIX + rule, connection_id="", event=event)
            started = time.perf_counter()
            try:
                record.result = json.loads(json.dumps(handler(event, context(name))))
            except Exception:  # noqa: BLE001 - logged and recorded, as Lambda would
                record.error = traceback.format_exc()
                log.error("event rule %s: %s failed:\n%s", rule, name, record.error)
            record.duration_ms = (time.perf_counter() - started) * 1000
            record.finished_at = time.time()
            on_invocation(record)

        return invoke

    # --- reading the sink --------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._sink)

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        """The first sink event ``predicate`` accepts, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._sink:
                    if predicate(event):
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no such event reached the local sink")
                self._cond.wait(left)

    def page(self, query: str = "") -> tuple[int, list[tuple[str, str]], bytes]:
        """``GET /events``: the sink as JSON, newest last (``?detailType=`` filters)."""
        from urllib.parse import parse_qs

        wanted = parse_qs(query).get("detailType")
        events = [e for e in self.events() if not wanted or e.get("detail-type") in wanted]
        body = json.dumps({"bus": self.bus_name, "events": events}, indent=2).encode()
        return 200, [("Content-Type", "application/json")], body
