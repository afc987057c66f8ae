"""A fan-out that outgrows one invocation continues on SQS, in Lambda's own workers.

A fan-out stops starting posts at its deadline (``Broadcaster``). What it had not posted then
is exact: the targets it had read but not started (``Report.unstarted``), the targets its
``Sweep`` had read but not handed out, and each registry Query not finished with the
``ExclusiveStartKey`` of its next page. ``Continuation.hand_off`` puts that in SQS messages
(jobs): the message's stream and seq (the worker re-reads the frame from the message log; the
text never travels through SQS), the sender's connection to exclude, up to
``CONTINUATION_BATCH`` target connection ids per job, and the unfinished Queries (in the first
job). The sender's ack counts the read targets as ``continued``.

Jobs are signed, expire and run once (``continuation_guard.py``), and a job names no endpoint:
the worker posts to the endpoint stored on each connection's registry item at ``$connect``
(a Query's targets carry it; the job's explicit ids are read back with BatchGetItem, which also
drops connections closed since).

The app's ``on_sqs_message`` handler calls ``Continuation.run_batch``: each job is fanned out
within the worker's own deadline, and what is left then is handed off again as new jobs
(``hop`` + 1), until every recipient is attempted. A job that raises (the log unreadable, SQS
refusing the next hand-off) is reported in ``batchItemFailures`` and redelivered by SQS after
its visibility timeout, then dead-lettered after the queue's ``maxReceiveCount``; so is a job
refused by its signature or expiry, which is never delivered.

Delivery: in the normal path each recipient is posted once per message. A worker that crashes
after posting part of a job and before SQS deletes it gets the job again: those recipients
get the message twice, and clients drop the duplicate by its ``(stream, seq)``.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from chalicelib import log, metrics, protocol
from chalicelib.audience import Audience
from chalicelib.broadcaster import Broadcaster, Report
from chalicelib.continuation_guard import JobLedger, JobSigner, RefusedJob
from chalicelib.message import Message
from chalicelib.message_log import MessageLog
from chalicelib.registry import QuerySpec, Registry, Target

# 3: signed (``continuation_guard.py``), with an id and an expiry; targets are connection ids
# only, never endpoints; Queries carry plain partition/prefix/start strings (the table layer's
# encoding). A job of an earlier version is refused as BadJob (and, unsigned, never opens).
VERSION = 3
# A job that keeps coming back without finishing (a registry page slower than the deadline,
# every time) stops here instead of circling forever; its rest is reported failed.
MAX_HOPS = 1000
# The least time a job gets to post in after its connections are read back, even past the
# batch's shared deadline (at most this much more per job: 5 jobs a batch stay far inside the
# worker's 60 s timeout with the 25 s deadline).
MIN_SLICE_SECONDS = 1.0
_log = logging.getLogger("switchboard")


class BadJob(RefusedJob):
    """A signed payload that is not a continuation job this code wrote."""


@dataclass(frozen=True)
class Job:
    """The rest of one message's fan-out: explicit targets, then the unfinished Queries.

    ``targets`` are connection ids (a ``Target``'s endpoint is never encoded: the worker reads
    each connection's own from the registry). ``id`` names the job for its one-time claim;
    ``exp`` (epoch seconds) is when it stops being honoured."""

    stream: str
    seq: int
    scope: str | None = None
    exclude: str | None = None
    targets: list[Target] = field(default_factory=list)
    queries: list[QuerySpec] = field(default_factory=list)
    hop: int = 1
    id: str = ""
    exp: int = 0

    def encode(self) -> str:
        """The payload (``JobSigner.sign`` makes it a queue message body)."""
        body: dict[str, Any] = {
            "v": VERSION,
            "id": self.id,
            "exp": self.exp,
            "stream": self.stream,
            "seq": self.seq,
            "scope": self.scope,
            "exclude": self.exclude,
            "hop": self.hop,
            "targets": [t.connection_id for t in self.targets],
            "queries": [q.as_dict() for q in self.queries],
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def decode(cls, payload: str) -> Job:
        """A job from a verified payload; anything else in it (an ``endpoints`` list a
        version 1 job had) is ignored."""
        try:
            data = json.loads(payload)
            if not isinstance(data, dict) or data.get("v") != VERSION:
                raise BadJob("not a continuation job (version)")
            targets = [Target(_text(cid, "target")) for cid in data["targets"]]
            stream, seq, hop = data["stream"], data["seq"], data["hop"]
            job_id, exp = data["id"], data["exp"]
            if not isinstance(stream, str) or not isinstance(seq, int) or not isinstance(hop, int):
                raise BadJob("stream, seq and hop must be a string and integers")
            if not isinstance(job_id, str) or not job_id or not isinstance(exp, int):
                raise BadJob("a job needs an id and an integer exp")
            return cls(
                stream=stream,
                seq=seq,
                scope=data.get("scope"),
                exclude=data.get("exclude"),
                targets=targets,
                queries=[QuerySpec.from_dict(q) for q in data["queries"]],
                hop=hop,
                id=job_id,
                exp=exp,
            )
        except BadJob:
            raise
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise BadJob(f"malformed continuation job: {exc!r}") from None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadJob(f"a {what} must be a non-empty string")
    return value


class JobBusy(Exception):
    """Another worker holds this job's claim: SQS delivers it again after its visibility
    timeout, and then it is done (acknowledged) or the claim has gone stale (taken over)."""


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
            id=uuid.uuid4().hex,
            exp=job.exp,
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
        *,
        signer: JobSigner,
        ledger: JobLedger,
    ) -> None:
        self._signer = signer
        self._ledger = ledger
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
        job = Job(
            stream,
            seq,
            scope,
            exclude,
            [*report.unstarted, *read],
            queries,
            hop,
            exp=self._signer.expiry(),
        )
        jobs = split(job, self._per_message)
        sent = 0
        try:
            for part in jobs:
                body = self._signer.sign(part.encode())
                self._sqs.send_message(QueueUrl=self._url(), MessageBody=body)
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
            except RefusedJob as exc:
                # Forged, malformed or expired: never delivered. Reported failed, so SQS's
                # redrive moves it to the dead-letter queue after maxReceiveCount receives
                # (each one refused here again, before anything is read or sent).
                log.emit(
                    logging.ERROR,
                    event="continuation_refused_job",
                    messageId=message_id,
                    error=str(exc),
                )
                failures.append({"itemIdentifier": message_id})
            except JobBusy:  # another worker runs it now: SQS redelivers it later
                failures.append({"itemIdentifier": message_id})
            except Exception:  # noqa: BLE001 - this record goes back to SQS; the others are done
                _log.exception("continuation job %s failed", message_id)
                failures.append({"itemIdentifier": message_id})
        return {"batchItemFailures": failures}

    def run(self, body: str, deadline: float | None = None) -> Report:
        """Fan one job out; hand its rest off again if the deadline stops it. ``RefusedJob``
        for a body this stage did not sign or one past its expiry; ``JobBusy`` while another
        worker runs the same job; a job already run to its end sends nothing."""
        job = Job.decode(self._signer.open(body))
        self._signer.check_expiry(job.exp)
        claim = self._ledger.claim(job.id, job.exp)
        if claim == JobLedger.DONE:
            log.emit(logging.WARNING, event="continuation_duplicate_job", jobId=job.id)
            return Report()
        if claim == JobLedger.BUSY:
            raise JobBusy(job.id)
        try:
            report = self._run(job, deadline)
        except BaseException:
            self._ledger.release(job.id)  # its redelivery runs it again
            raise
        self._ledger.complete(job.id)
        return report

    def _run(self, job: Job, deadline: float | None) -> Report:
        frame = self._message_log.get(job.stream, job.seq)
        if frame is None:
            # Past retention (or never logged): nothing left to send.
            log.emit(
                logging.WARNING, event="continuation_message_gone", stream=job.stream, seq=job.seq
            )
            return Report()
        message = Message.from_frame(frame)
        # The job names connections, never endpoints: each is read back from the registry
        # (BatchGetItem), so a post goes to the endpoint its item stored at $connect, and a
        # connection closed since is not posted to at all.
        ids = [t.connection_id for t in job.targets]
        targets = self._registry.live_targets(ids)
        closed_since = len(ids) - len(targets)
        if deadline is not None:
            # However long the read took, the job gets a slice to post in: a job that could
            # never start a post before the batch's deadline would be handed off for ever.
            deadline = max(
                deadline, time.monotonic() + min(MIN_SLICE_SECONDS, self._deadline_seconds)
            )
        audience = Audience(self._registry, job.queries, targets)
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
        metrics.emit_report(
            report,
            job.scope,
            stream=job.stream,
            seq=job.seq,
            hop=job.hop,
            closedSince=closed_since,
        )
        return report
