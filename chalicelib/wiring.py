"""Build the real collaborators of a ``Switchboard``: boto3 clients, botocore configs.

Called once per Lambda container (app.py's ``get_switchboard``). Kept apart from service.py
so the behaviour there takes its collaborators and never builds an AWS client itself; the
one other AWS call a container makes, reading the JWT secret (and a continuation job key)
from SSM, is here too (``settings_from_env``), and so is the health check that asks botocore
for credentials.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from chalicelib import log
from chalicelib.authorizer import Authorizer, lambda_invoke
from chalicelib.aws_errors import error_code
from chalicelib.broadcaster import Broadcaster
from chalicelib.bus import Events, Publisher
from chalicelib.config import ConfigError, Settings
from chalicelib.devices import Devices
from chalicelib.errors import HttpAnswer, Misconfigured, classify
from chalicelib.management_api import ManagementApi
from chalicelib.message_log import MessageLog
from chalicelib.push import PushNotifier
from chalicelib.registry import Registry
from chalicelib.service import Switchboard
from chalicelib.table import DynamoDB


def build_switchboard(settings: Settings, session: Any = None) -> Switchboard:
    """A ``Switchboard`` over DynamoDB and the management API, from ``session`` (a boto3
    session; a new default one if None). The DynamoDB endpoint comes from the environment
    (``AWS_ENDPOINT_URL_DYNAMODB`` locally), as boto3 reads it."""
    log.configure(settings.log_level)
    session = session or boto3.session.Session()
    ddb = session.client("dynamodb", config=_config(settings, settings.fanout_workers))
    # The table layer alone holds the DynamoDB client; every service shares it (and its clock).
    table = DynamoDB(ddb, settings.table_name)
    registry = Registry(table, settings.connection_ttl_seconds, settings.all_shards)
    gateway = ManagementApi(
        override=settings.management_endpoint,
        session=session,
        max_pool_connections=settings.fanout_workers,
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        max_attempts=settings.max_attempts,
        transport=settings.management_transport,
        rate_control=settings.fanout_rate_control,
        initial_rate=settings.fanout_initial_rate,
        max_rate=settings.fanout_max_rate,
    )
    message_log = MessageLog(table, settings.history_ttl_seconds)
    # The SQS endpoint comes from the environment too (AWS_ENDPOINT_URL_SQS locally); the
    # client is made when first used (_OnFirstUse).
    sqs = None
    if settings.continuation_queue_url or settings.continuation_queue_name:
        sqs = _OnFirstUse(lambda: session.client("sqs", config=_config(settings, 10)))
    authorizer = build_authorizer(settings, session)
    events = build_events(settings, session)
    return assemble(settings, registry, gateway, message_log, sqs, authorizer, events)


def assemble(
    settings: Settings,
    registry: Registry,
    gateway: ManagementApi,
    message_log: MessageLog,
    sqs: Any = None,
    authorizer: Authorizer | None = None,
    events: Events | None = None,
) -> Switchboard:
    """The ``Switchboard`` over its storage and gateway: the broadcaster, the continuation
    (when ``sqs`` is given and a queue is configured) and the service. The one place they are
    put together: the tests assemble theirs here too, over moto or the in-memory table and a
    fake gateway."""
    # The broadcaster returns the connections it found gone; the switchboard removes them.
    broadcaster = Broadcaster(gateway, deadline_seconds=settings.fanout_deadline_seconds)
    continuation = None
    queue_name = settings.continuation_queue_name
    if sqs is not None and (settings.continuation_queue_url or queue_name):
        # Only a stage with a queue needs these.
        from chalicelib.continuation import Continuation, QueueByName
        from chalicelib.continuation_guard import JobLedger, JobSigner, job_key

        key = job_key(settings)
        if key is None:  # Settings.from_env refuses this; a hand-built Settings may not
            raise ConfigError("CONTINUATION_KEY is required with a continuation queue")
        queue: str | QueueByName = settings.continuation_queue_url or QueueByName(
            sqs, queue_name or ""
        )
        continuation = Continuation(
            sqs,
            queue,
            registry,
            message_log,
            broadcaster,
            per_message=settings.continuation_batch,
            deadline_seconds=settings.fanout_deadline_seconds,
            signer=JobSigner(key, settings.continuation_job_ttl_seconds),
            ledger=JobLedger(registry.table),
        )
    return Switchboard(
        settings,
        registry,
        gateway,
        broadcaster,
        message_log,
        continuation=continuation,
        authorizer=authorizer,
        events=events,
    )


def build_authorizer(settings: Settings, session: Any) -> Authorizer | None:
    """The authorizer caller when a namespace names one: a Lambda client per timeout (the
    namespace's ``authorizerTimeoutMs`` is the client's read timeout), built on first use and
    kept for the container; no retries (a retry would double the wait a join stays within).
    The endpoint comes from the environment (``AWS_ENDPOINT_URL_LAMBDA`` locally)."""
    if not settings.authorizer_functions:
        return None
    clients: dict[float, Any] = {}
    lock = threading.Lock()  # boto3 sessions are not thread-safe: build clients one at a time

    def client_for(timeout: float) -> Any:
        with lock:
            if timeout not in clients:
                clients[timeout] = session.client(
                    "lambda",
                    config=Config(
                        retries={"total_max_attempts": 1},
                        connect_timeout=min(timeout, settings.http_connect_timeout),
                        read_timeout=timeout,
                        max_pool_connections=16,
                    ),
                )
            return clients[timeout]

    return Authorizer(lambda_invoke(client_for), settings.authorizer_functions)


def build_events(settings: Settings, session: Any) -> Events:
    """Back-end events (bus.py): a publisher to ``EVENT_BUS_NAME`` over an ``events`` client
    (its endpoint from the environment too: ``AWS_ENDPOINT_URL_EVENTBRIDGE`` locally, named
    after the service id as botocore's service-specific endpoint variables are), or none."""
    if not settings.event_bus_name:
        return Events()
    # Made at the first flush, not at cold start (a container may never publish).
    client = _OnFirstUse(lambda: session.client("events", config=_config(settings, 4)))
    return Events(
        Publisher(client, settings.event_bus_name), preview_chars=settings.event_preview_chars
    )


def build_push_notifier(settings: Settings, session: Any = None) -> PushNotifier:
    """The push notifier (push.py): the devices in the table, SNS for mobile push (its
    endpoint from the environment: ``AWS_ENDPOINT_URL_SNS`` locally)."""
    log.configure(settings.log_level)
    session = session or boto3.session.Session()
    ddb = session.client("dynamodb", config=_config(settings, 10))
    devices = Devices(DynamoDB(ddb, settings.table_name), settings.device_ttl_seconds)
    applications = {
        platform: arn
        for platform, arn in (
            ("apns", settings.push_apns_application_arn),
            ("apns_sandbox", settings.push_apns_sandbox_application_arn),
            ("fcm", settings.push_fcm_application_arn),
        )
        if arn
    }
    return PushNotifier(devices, session.client("sns", config=_config(settings, 10)), applications)


def _config(settings: Settings, pool: int) -> Config:
    """botocore's standard retries and the configured timeouts, with ``pool`` connections."""
    return Config(
        retries={"mode": "standard"},
        max_pool_connections=pool,
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
    )


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    """``Settings.from_env`` with the JWT secret and the continuation job key read from SSM
    when the environment names a parameter (``JWT_SECRET_PARAMETER``,
    ``CONTINUATION_KEY_PARAMETER``) instead of holding the secret."""
    return Settings.from_env(env, read_secret=read_secret_parameter)


def read_secret_parameter(name: str, setting: str = "JWT_SECRET_PARAMETER") -> str:
    """The decrypted value of an SSM (SecureString) parameter: deployed stages keep the JWT
    secret and the continuation job key there, so neither appears in a template, a Lambda's
    configuration or the repo. ``setting`` is the variable that named it (error messages)."""
    client = boto3.client(
        "ssm",
        config=Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard"}),
    )
    try:
        response = client.get_parameter(Name=name, WithDecryption=True)
    except ClientError as exc:
        raise ConfigError(f"{setting} {name!r} could not be read: {error_code(exc)}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"{setting} {name!r} could not be read: {exc}") from None
    value = str(response["Parameter"]["Value"])
    if not value.strip():
        raise ConfigError(f"{setting} {name!r} is empty")
    return value


def health_check(build: Callable[[], object]) -> HttpAnswer:
    """GET /health: 200 ``{"status":"ok"}`` (nothing about the deployment, no table name),
    or 503 ``{"status":"misconfigured","missing":[variable names],"error":...}`` when the
    function cannot work: no table, region or credentials (e.g. ``chalice local`` without the
    environment ``make run`` writes), or a setting ConfigError refuses. ``build`` is the
    app's ``get_switchboard``."""
    try:
        build()
        # botocore finds credentials only when it signs: look now so /health can say so.
        if boto3.session.Session().get_credentials() is None:
            raise NoCredentialsError()
    except Exception as exc:  # noqa: BLE001 - anything is reported, never raised
        if isinstance(exc, ConfigError):
            logging.getLogger("switchboard").error("configuration error: %s", exc)
        error = classify(exc)
        if not isinstance(error, Misconfigured):
            logging.getLogger("switchboard").exception("health check failed")
            error = Misconfigured("the function could not start; see its logs")
        body = {"status": "misconfigured", "missing": list(error.missing), "error": str(error)}
        return HttpAnswer(503, body)
    return HttpAnswer(200, {"status": "ok"})


class _OnFirstUse:
    """A client made when first used: every function of a ``chalice deploy`` stage has the
    queue's name, but $connect and $disconnect never enqueue, and making an SQS client costs
    tens of milliseconds of a cold start."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._make()
        return getattr(self._client, name)
