"""A fan-out that outgrows one invocation continues on SQS, in Lambda's own workers.

A fan-out stops starting posts at its deadline (``Broadcaster``). What it had not posted then
is exact: the targets it had read but not started (``Report.unstarted``), the targets its
``Sweep`` had read but not handed out, and each registry Query not finished with the
``ExclusiveStartKey`` of its next page. ``Continuation.hand_off`` puts that in SQS messages
(jobs): the message's stream and seq (the worker re-reads the frame from the message log; the
text never travels through SQS), the sender's connection to exclude, up to
``CONTINUATION_BATCH`` targets per job with their endpoints, and the unfinished Queries (in the
first job). The sender's ack counts the read targets as ``continued``.

The app's ``on_sqs_message`` handler calls ``Continuation.run_batch``: each job is fanned out
within the worker's own deadline, and what is left then is handed off again as new jobs
(``hop`` + 1), until every recipient is attempted. A job that raises (the log unreadable, SQS
refusing the next hand-off) is reported in ``batchItemFailures`` and redelivered by SQS after
its visibility timeout, then dead-lettered after the queue's ``maxReceiveCount``.

Delivery: in the normal path each recipient is posted once per message. A worker that crashes
after posting part of a job and before SQS deletes it gets the job again: those recipients
get the message twice, and clients drop the duplicate by its ``(stream, seq)``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib import log, metrics, protocol
from chalicelib.audience import Audience
from chalicelib.broadcaster import Broadcaster, Report
from chalicelib.message import Message
from chalicelib.message_log import MessageLog
from chalicelib.registry import QuerySpec, Registry, Target

# 2: a job's Queries carry a partition, prefix and start key in plain strings (the table
# layer's encoding), no longer DynamoDB expressions and attribute values; a version-1 job left
# on the queue by the previous deploy is refused as BadJob rather than misread.
VERSION = 2
# A job that keeps coming back without finishing (a registry page slower than the deadline,
# every time) stops here instead of circling forever; its rest is reported failed.
MAX_HOPS = 1000
_log = logging.getLogger("switchboard")


class BadJob(ValueError):
    """An SQS message body that is not a continuation job this code wrote."""


@dataclass(frozen=True)
class Job:
    """The rest of one message's fan-out: explicit targets, then the unfinished Queries."""

    stream: str
    seq: int
    scope: str | None = None
    exclude: str | None = None
    targets: list[Target] = field(default_factory=list)
    queries: list[QuerySpec] = field(default_factory=list)
    hop: int = 1

    def encode(self) -> str:
        endpoints = sorted({t.endpoint for t in self.targets if t.endpoint})
        index = {e: i for i, e in enumerate(endpoints)}
        body: dict[str, Any] = {
            "v": VERSION,
            "stream": self.stream,
            "seq": self.seq,
            "scope": self.scope,
            "exclude": self.exclude,
            "hop": self.hop,
            # Endpoints once per job, targets as [connectionId, endpoint index or null].
            "endpoints": endpoints,
            "targets": [
                [t.connection_id, index[t.endpoint] if t.endpoint else None] for t in self.targets
            ],
            "queries": [q.as_dict() for q in self.queries],
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def decode(cls, body: str) -> Job:
        try:
            data = json.loads(body)
            if not isinstance(data, dict) or data.get("v") != VERSION:
                raise BadJob("not a continuation job (version)")
            endpoints = [str(e) for e in data["endpoints"]]
            targets = [
                Target(str(cid), None, endpoints[i] if i is not None else None)
                for cid, i in data["targets"]
            ]
            stream, seq, hop = data["stream"], data["seq"], data["hop"]
            if not isinstance(stream, str) or not isinstance(seq, int) or not isinstance(hop, int):
                raise BadJob("stream, seq and hop must be a string and integers")
            return cls(
                stream=stream,
                seq=seq,
                scope=data.get("scope"),
                exclude=data.get("exclude"),
                targets=targets,
                queries=[QuerySpec.from_dict(q) for q in data["queries"]],
                hop=hop,
            )
        except BadJob:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise BadJob(f"malformed continuation job: {exc!r}") from None


class Resumable(Protocol):
    def rest(self) -> tuple[list[Target], list[QuerySpec]]: ...


def split(job: Job, per_message: int) -> list[Job]:
    """``job`` as SQS-sized jobs: ``per_message`` targets each, the Queries in the first."""
    chunks = [job.targets[i : i + per_message] for i in range(0, len(job.targets), per_message)]
    if not chunks:
        chunks = [[]]
    return [
        Job(
            job.stream,
            job.seq,
            job.scope,
            job.exclude,
            chunk,
            job.queries if n == 0 else [],
            job.hop,
        )
        for n, chunk in enumerate(chunks)
    ]


class QueueByName:
    """A queue's URL looked up by its name on first use, once (``chalice deploy`` stages know
    only the name: the URL holds the account id)."""

    def __init__(self, sqs: Any, name: str) -> None:
        self._sqs = sqs
        self._name = name
        self._url: str | None = None

    def __call__(self) -> str:
        if self._url is None:
            self._url = str(self._sqs.get_queue_url(QueueName=self._name)["QueueUrl"])
        return self._url


class Continuation:
    """Hands a stopped fan-out's rest to SQS, and runs the jobs that arrive from it."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str | Callable[[], str],
        registry: Registry,
        message_log: MessageLog,
        broadcaster: Broadcaster,
        per_message: int = 2000,
        deadline_seconds: float = 25.0,
        max_hops: int = MAX_HOPS,
    ) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._registry = registry
        self._message_log = message_log
        self._broadcaster = broadcaster
        self._per_message = per_message
        self._deadline_seconds = deadline_seconds
        self._max_hops = max_hops

    def _url(self) -> str:
        return self._queue_url if isinstance(self._queue_url, str) else self._queue_url()

    def hand_off(
        self,
        report: Report,
        audience: Resumable,
        message: Message,
        exclude: str | None,
        scope: str | None,
        hop: int = 1,
        strict: bool = False,
    ) -> Report:
        """The policy for a fan-out's remainder: if it stopped at its deadline, enqueue its
        rest and return the report with the targets it had read counted ``continued``. When
        SQS refuses, or after ``max_hops``, the report is returned as it was (the unstarted
        ones failed, reason ``deadline``, as without a continuation); ``strict`` (a worker,
        whose job SQS can redeliver) raises instead."""
        if not report.stopped_early:
            return report
        stream, seq = message.position
        if hop > self._max_hops:
            log.emit(logging.ERROR, event="continuation_gave_up", stream=stream, seq=seq, hop=hop)
            return report
        read, queries = audience.rest()
        read = [t for t in read if t.connection_id != exclude]  # the sender is never sent to
        job = Job(stream, seq, scope, exclude, [*report.unstarted, *read], queries, hop)
        jobs = split(job, self._per_message)
        sent = 0
        try:
            for part in jobs:
                self._sqs.send_message(QueueUrl=self._url(), MessageBody=part.encode())
                sent += 1
        except Exception as exc:  # noqa: BLE001 - no continuation: the rest fails, as before
            log.emit(
                logging.ERROR,
                event="continuation_failed",
                stream=job.stream,
                seq=job.seq,
                sent=sent,
                jobs=len(jobs),
                error=type(exc).__name__,
            )
            if strict:
                raise
            return report
        log.emit(
            event="continuation_enqueued",
            stream=job.stream,
            seq=job.seq,
            hop=hop,
            targets=len(job.targets),
            queries=len(queries),
            messages=len(jobs),
        )
        return report.continued_by(len(read))

    def run_batch(
        self,
        records: list[tuple[str, str]],
        after: Callable[[Report], object] = lambda report: None,
    ) -> dict[str, Any]:
        """Carry on every job of one SQS batch (``(messageId, body)`` pairs) within one
        deadline; the answer is Lambda's partial-batch response (``batchItemFailures``).
        ``after`` gets each job's report (the service removes the connections found gone)."""
        deadline = time.monotonic() + self._deadline_seconds
        failures: list[dict[str, str]] = []
        for message_id, body in records:
            try:
                after(self.run(body, deadline))
            except BadJob as exc:
                # Redelivering a body that can never parse helps nobody: logged and dropped.
                log.emit(
                    logging.ERROR,
                    event="continuation_bad_job",
                    messageId=message_id,
                    error=str(exc),
                )
            except Exception:  # noqa: BLE001 - this record goes back to SQS; the others are done
                _log.exception("continuation job %s failed", message_id)
                failures.append({"itemIdentifier": message_id})
        return {"batchItemFailures": failures}

    def run(self, body: str, deadline: float | None = None) -> Report:
        """Fan one job out; hand its rest off again if the deadline stops it."""
        job = Job.decode(body)
        frame = self._message_log.get(job.stream, job.seq)
        if frame is None:
            # Past retention (or never logged): nothing left to send.
            log.emit(
                logging.WARNING, event="continuation_message_gone", stream=job.stream, seq=job.seq
            )
            return Report()
        message = Message.from_frame(frame)
        audience = Audience(self._registry, job.queries, job.targets)
        report = self._broadcaster.fan_out(
            audience,
            protocol.encode(message.to_frame()),
            exclude=job.exclude,
            scope=job.scope,
            deadline=deadline,
        )
        report = self.hand_off(
            report, audience, message, job.exclude, job.scope, job.hop + 1, strict=True
        )
        metrics.emit_report(report, job.scope, stream=job.stream, seq=job.seq, hop=job.hop)
        return report
