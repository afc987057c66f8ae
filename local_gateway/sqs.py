"""Embedded SQS for the app's ``@app.on_sqs_message`` handlers: Lambda's event source mapping.

moto's server serves every AWS service on one port, so the embedded DynamoDB's endpoint is
also an SQS endpoint (the app gets it as ``AWS_ENDPOINT_URL_SQS``). At start the gateway
creates each queue an SQS handler names (``queue``, or the last part of ``queue_arn``), and a
poller per handler does what Lambda's SQS poller does ("Using Lambda with Amazon SQS",
https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html):

- receives up to ``batch_size`` messages (SQS gives at most 10 per ReceiveMessage) and invokes
  the handler with the SQS event shape: ``Records[]`` of ``messageId``, ``receiptHandle``,
  ``body``, ``attributes`` (ApproximateReceiveCount, SentTimestamp, SenderId,
  ApproximateFirstReceiveTimestamp), ``messageAttributes``, ``md5OfBody``, ``eventSource``
  ``aws:sqs``, ``eventSourceARN``, ``awsRegion`` (the example event on that page);
- deletes the batch when the invocation succeeds; leaves it all for redelivery after the
  visibility timeout when the handler raises;
- partial batch responses ("Handling errors for an SQS event source in Lambda",
  https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html): a return value
  ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`` deletes every other message;
  an empty or null list means all succeeded; an identifier that is empty or not in the batch
  fails the whole batch.

As deployed (deploy/template.py, deploy/chalice_deploy.py), each queue has a dead-letter queue
``<queue>-dlq`` and a redrive policy: after ``max_receives`` receives a job that keeps failing
moves there instead of coming back forever. ``urls`` maps each queue's name to its URL, so the
gateway can hand the app the URL it sends to (``--queue-url-env``).

No long polling: the embedded server handles one request at a time (``dynamodb._Serialized``),
so a 20 s ReceiveMessage would stall DynamoDB; an empty receive sleeps ``idle_seconds`` instead.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from local_gateway.lambda_events import LambdaContext
from local_gateway.lambda_runtime import Invocation
from local_gateway.sigv4 import Credentials

log = logging.getLogger("local_gateway.sqs")
ACCOUNT = "123456789012"  # moto's default account, in its queue URLs and ARNs
ROUTE_PREFIX = "sqs:"  # Invocation.route_key of an SQS invocation: "sqs:<queue name>"


@dataclass(frozen=True)
class SqsSource:
    """One ``on_sqs_message`` registration of the app."""

    name: str  # the handler's function name (Chalice: the Lambda function is named after it)
    handler_string: str
    queue: str
    batch_size: int


def sqs_sources(app: Any) -> list[SqsSource]:
    """The app's SQS event sources (Chalice's ``SQSEventConfig`` registrations)."""
    out = []
    for source in getattr(app, "event_sources", []):
        if type(source).__name__ != "SQSEventConfig":
            continue
        queue = source.queue or str(source.queue_arn).rsplit(":", 1)[-1]
        out.append(SqsSource(source.name, source.handler_string, queue, int(source.batch_size)))
    return out


def resolve(app: Any, source: SqsSource) -> Callable[[dict[str, Any], Any], Any]:
    """The Lambda-callable of an SQS handler, found as Lambda finds it (``handler_string``)."""
    module_name, _, attr = source.handler_string.rpartition(".")
    module = sys.modules.get(module_name)
    func = getattr(module, attr, None) if module is not None else None
    if func is None:
        func = app.handler_map[source.name]
    return func  # type: ignore[no-any-return]


def lambda_event(messages: list[dict[str, Any]], queue: str, region: str) -> dict[str, Any]:
    """Lambda's SQS event for messages as ReceiveMessage returns them."""
    arn = f"arn:aws:sqs:{region}:{ACCOUNT}:{queue}"
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes", {})),
                "messageAttributes": {
                    k: {
                        "stringValue": v.get("StringValue"),
                        "binaryValue": v.get("BinaryValue"),
                        "stringListValues": [],
                        "binaryListValues": [],
                        "dataType": v.get("DataType"),
                    }
                    for k, v in m.get("MessageAttributes", {}).items()
                },
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": region,
            }
            for m in messages
        ]
    }


def failed_ids(result: Any, batch_ids: set[str]) -> set[str] | None:
    """The message ids a handler's return value reports failed; None: the whole batch failed
    (an identifier that is empty or not in the batch)."""
    if not isinstance(result, dict):
        return set()
    items = result.get("batchItemFailures")
    if not items:
        return set()
    failed = set()
    for item in items:
        ident = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not ident or ident not in batch_ids:
            return None
        failed.add(ident)
    return failed


class QueuePoller:
    """Lambda's poller for one SQS handler: receive a batch, invoke, delete what succeeded."""

    def __init__(
        self,
        client: Any,
        source: SqsSource,
        handler: Callable[[dict[str, Any], Any], Any],
        context: Callable[[], LambdaContext],
        region: str,
        on_invocation: Callable[[Invocation], None],
        idle_seconds: float = 0.05,
    ) -> None:
        self.client = client
        self.source = source
        self.handler = handler
        self.context = context
        self.region = region
        self.on_invocation = on_invocation
        self.idle_seconds = idle_seconds
        self.queue_url = client.get_queue_url(QueueName=source.queue)["QueueUrl"]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"sqs-{self.source.queue}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.poll_once()
            except Exception:  # noqa: BLE001 - the server may be stopping; keep polling
                log.debug("SQS poll failed", exc_info=True)
                handled = 0
            if not handled:
                self._stop.wait(self.idle_seconds)

    def poll_once(self) -> int:
        """One receive and invocation; the number of messages received."""
        messages = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(self.source.batch_size, 10),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        event = lambda_event(messages, self.source.queue, self.region)
        record = Invocation(
            route_key=ROUTE_PREFIX + self.source.queue, connection_id="", event=event
        )
        started = time.perf_counter()
        try:
            record.result = json.loads(json.dumps(self.handler(event, self.context())))
        except Exception:  # noqa: BLE001 - an invocation error: the whole batch comes back
            record.error = traceback.format_exc()
            log.error("SQS handler %s failed:\n%s", self.source.name, record.error)
        record.duration_ms = (time.perf_counter() - started) * 1000
        record.finished_at = time.time()
        if record.error is None:
            failed = failed_ids(record.result, {m["MessageId"] for m in messages})
            if failed is not None:
                done = [m for m in messages if m["MessageId"] not in failed]
                for start in range(0, len(done), 10):
                    self.client.delete_message_batch(
                        QueueUrl=self.queue_url,
                        Entries=[
                            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                            for i, m in enumerate(done[start : start + 10])
                        ],
                    )
        self.on_invocation(record)
        return len(messages)


class LocalQueues:
    """The queues and pollers of every SQS handler of an app."""

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Credentials,
        visibility_timeout: int = 30,
        max_receives: int = 5,
    ) -> None:
        import boto3

        # The run's own credentials: the embedded server refuses others, and a local endpoint
        # must never receive the developer's real ones.
        self.client = boto3.client(
            "sqs", endpoint_url=endpoint_url, region_name=region, **credentials.boto3_kwargs()
        )
        self.region = region
        self.visibility_timeout = visibility_timeout
        self.max_receives = max_receives
        self.pollers: list[QueuePoller] = []
        self.urls: dict[str, str] = {}  # queue name -> URL, dead-letter queues included

    def start(
        self,
        app: Any,
        context: Callable[[SqsSource], LambdaContext],
        on_invocation: Callable[[Invocation], None],
    ) -> None:
        for source in sqs_sources(app):
            self.create(source.queue)
            poller = QueuePoller(
                self.client,
                source,
                resolve(app, source),
                lambda s=source: context(s),  # type: ignore[misc]
                self.region,
                on_invocation,
            )
            poller.start()
            self.pollers.append(poller)
            log.info("SQS queue %s -> handler %s", source.queue, source.name)

    def create(self, queue: str) -> str:
        """``queue`` and its dead-letter queue, with the redrive policy; the queue's URL."""
        dlq = f"{queue}-dlq"
        self.urls[dlq] = self.client.create_queue(QueueName=dlq)["QueueUrl"]
        dlq_arn = self.client.get_queue_attributes(
            QueueUrl=self.urls[dlq], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        redrive = {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": self.max_receives}
        self.urls[queue] = self.client.create_queue(
            QueueName=queue,
            Attributes={
                "VisibilityTimeout": str(self.visibility_timeout),
                "RedrivePolicy": json.dumps(redrive),
            },
        )["QueueUrl"]
        return self.urls[queue]

    def stop(self) -> None:
        for poller in self.pollers:
            poller._stop.set()
        for poller in self.pollers:
            poller.stop()
        self.pollers = []
