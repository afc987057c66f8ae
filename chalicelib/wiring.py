"""Build the real collaborators of a ``Switchboard``: boto3 clients, botocore configs.

Called once per Lambda container (app.py's ``get_switchboard``). Kept apart from service.py
so the behaviour there takes its collaborators and never builds an AWS client itself.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from chalicelib import log
from chalicelib.broadcaster import Broadcaster
from chalicelib.config import Settings
from chalicelib.continuation import Continuation, QueueByName
from chalicelib.management_api import ManagementApi
from chalicelib.message_log import MessageLog
from chalicelib.registry import Registry
from chalicelib.service import Switchboard


def build_switchboard(settings: Settings, session: Any = None) -> Switchboard:
    """A ``Switchboard`` over DynamoDB and the management API, from ``session`` (a boto3
    session; a new default one if None). The DynamoDB endpoint comes from the environment
    (``AWS_ENDPOINT_URL_DYNAMODB`` locally), as boto3 reads it."""
    log.configure(settings.log_level)
    session = session or boto3.session.Session()
    ddb = session.client("dynamodb", config=_config(settings, settings.fanout_workers))
    registry = Registry(
        ddb, settings.table_name, settings.connection_ttl_seconds, settings.all_shards
    )
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
    switchboard: list[Switchboard] = []

    def prune(connection_id: str) -> bool:
        # A 410 prune removes the connection and announces the rooms its user left: the
        # same path as $disconnect, which may never come for a dropped connection.
        return switchboard[0].forget(connection_id)

    broadcaster = Broadcaster(
        gateway,
        prune,
        settings.fanout_workers,
        deadline_seconds=settings.fanout_deadline_seconds,
    )
    message_log = MessageLog(ddb, settings.table_name, settings.history_ttl_seconds)
    continuation = None
    if settings.continuation_queue_url or settings.continuation_queue_name:
        # The SQS endpoint comes from the environment too (AWS_ENDPOINT_URL_SQS locally).
        sqs = _OnFirstUse(lambda: session.client("sqs", config=_config(settings, 10)))
        continuation = Continuation(
            sqs,
            settings.continuation_queue_url or QueueByName(sqs, settings.continuation_queue_name),
            registry,
            message_log,
            broadcaster,
            per_message=settings.continuation_batch,
            deadline_seconds=settings.fanout_deadline_seconds,
        )
    switchboard.append(
        Switchboard(
            settings, registry, gateway, broadcaster, message_log, continuation=continuation
        )
    )
    return switchboard[0]


def _config(settings: Settings, pool: int) -> Config:
    """botocore's standard retries and the configured timeouts, with ``pool`` connections."""
    return Config(
        retries={"mode": "standard"},
        max_pool_connections=pool,
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
    )


class _OnFirstUse:
    """A client made when first used: every function of a ``chalice deploy`` stage has the
    queue's name, but $connect and $disconnect never enqueue, and making an SQS client costs
    tens of milliseconds of a cold start."""

    def __init__(self, make: Any) -> None:
        self._make = make
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._make()
        return getattr(self._client, name)
