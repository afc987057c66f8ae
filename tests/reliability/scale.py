"""The reliability tests' scale knob: ``RELIABILITY_SCALE=small`` (the default, part of
``make test``) or ``soak`` (``make soak``) sizes every scenario and bounds its time."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Scale:
    """Sizes of every scenario: ``small`` runs in ``make test``, ``soak`` in ``make soak``."""

    name: str
    # churn
    churn_sessions: int
    churn_min_sessions: int  # the most the capacity check asks (less on a slower machine)
    churn_concurrency: int
    churn_users: int
    churn_rooms: int
    churn_senders: int
    churn_residents: int  # clients there for the whole churn
    churn_seconds: float
    churn_lifetime: tuple[float, float]
    # What a churning session costs the stack, in set-up joins (measured: presence fan-outs and
    # broadcasts grow with the rooms and the live clients, so a session costs more at soak).
    # A join is the unit, so this moves when a join's cost moves apart from the rest of a
    # session's (connect, leave, $disconnect): issue #26 cut a join from 9 to 5 sequential
    # DynamoDB calls and the others less, and small scale's 1.5 then asked 62 sessions where
    # the same machine ran 53, as it did before (test_churn.py, Churn.capacity).
    churn_session_joins: float
    # abrupt drops
    drop_clients: int
    frozen_clients: int
    ghost_clients: int
    # reconnecting clients (drop, come back, resume)
    reconnect_clients: int
    reconnect_seconds: float  # how long the senders send
    reconnect_pause: tuple[float, float]  # away for, and connected for, between drops
    # @connections faults
    fault_clients: int
    fault_senders: int
    fault_messages: int  # per sender
    # DynamoDB throttling
    ddb_clients: int
    ddb_frames: int  # per sender
    # fuzzing
    fuzz_examples: int
    auth_fuzz_examples: int
    # pytest-timeout for the larger tests
    timeout: int


SCALES = {
    "small": Scale(
        name="small",
        churn_sessions=120,
        churn_min_sessions=100,
        churn_concurrency=40,
        churn_users=30,
        churn_rooms=4,
        churn_senders=2,
        churn_residents=8,
        churn_seconds=8.0,
        churn_lifetime=(0.2, 1.5),
        churn_session_joins=2.5,
        drop_clients=60,
        frozen_clients=20,
        ghost_clients=20,
        reconnect_clients=12,
        reconnect_seconds=6.0,
        reconnect_pause=(0.2, 1.5),
        fault_clients=16,
        fault_senders=4,
        fault_messages=3,
        ddb_clients=12,
        ddb_frames=6,
        fuzz_examples=250,
        auth_fuzz_examples=40,
        timeout=90,
    ),
    "soak": Scale(
        name="soak",
        churn_sessions=1500,
        churn_min_sessions=600,
        churn_concurrency=150,
        churn_users=150,
        churn_rooms=8,
        churn_senders=3,
        churn_residents=20,
        churn_seconds=90.0,
        churn_lifetime=(0.5, 6.0),
        churn_session_joins=4.0,
        drop_clients=400,
        frozen_clients=100,
        ghost_clients=200,
        reconnect_clients=60,
        reconnect_seconds=45.0,
        reconnect_pause=(0.2, 5.0),
        fault_clients=100,
        fault_senders=8,
        fault_messages=10,
        ddb_clients=60,
        ddb_frames=40,
        fuzz_examples=2500,
        auth_fuzz_examples=300,
        timeout=420,
    ),
}


def scale() -> Scale:
    name = os.environ.get("RELIABILITY_SCALE", "small").strip().lower() or "small"
    if name not in SCALES:
        raise ValueError(f"RELIABILITY_SCALE must be one of {sorted(SCALES)}, got {name!r}")
    return SCALES[name]


SCALE = scale()


def run(coro: Any, timeout: float = SCALE.timeout - 20) -> Any:
    """Run a scenario on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))
