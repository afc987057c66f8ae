"""Fault injection for the @connections management API, and lost ``$disconnect``s.

Benchmarks and tests use it to see how the app behaves when API Gateway is slow or
throttles: added latency on every @connections call, and a share of POSTs answered with
429 LimitExceededException or 500 InternalServerErrorException.

``drop_disconnect_rate``: a share of closed connections whose ``$disconnect`` never runs.
AWS: "$disconnect is a best-effort event. API Gateway will try its best to deliver the
$disconnect event to your integration, but it cannot guarantee delivery" ("Manage connected
users and client apps: $connect and $disconnect routes", API Gateway developer guide,
https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-route-keys-connect-disconnect.html).
The app must still clean its registry: the connection's TTL, and the 410 Gone a later send
to it gets (tests/reliability/test_lost_disconnects.py).
"""

from __future__ import annotations

import enum
import random
import threading
from dataclasses import dataclass, replace
from typing import Any


@dataclass(frozen=True)
class FaultConfig:
    """What to inject. Rates are probabilities in [0, 1]; their sum must be <= 1."""

    latency_ms: float = 0.0
    throttle_rate: float = 0.0
    error_rate: float = 0.0
    seed: int | None = None
    drop_disconnect_rate: float = 0.0  # closed connections whose $disconnect is not run

    def validate(self) -> FaultConfig:
        if self.latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        for name in ("throttle_rate", "error_rate", "drop_disconnect_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.throttle_rate + self.error_rate > 1.0:
            raise ValueError("throttle_rate + error_rate must be <= 1")
        return self

    @property
    def active(self) -> bool:
        return bool(
            self.latency_ms or self.throttle_rate or self.error_rate or self.drop_disconnect_rate
        )


class PostFault(enum.Enum):
    """What an injected fault does to one @connections POST."""

    THROTTLE = "throttle"  # 429 LimitExceededException
    ERROR = "error"  # 500 InternalServerErrorException


class FaultInjector:
    """Draws faults from a (optionally seeded) RNG; reconfigurable while running."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = (config or FaultConfig()).validate()
        self._rng = random.Random(self._config.seed)
        # Its own stream: dropping $disconnects must not shift which POSTs get faults.
        self._disconnect_rng = random.Random(self._config.seed)
        self.dropped_disconnects = 0

    @property
    def config(self) -> FaultConfig:
        return self._config

    def configure(self, config: FaultConfig | None = None, **changes: Any) -> FaultConfig:
        """Replace the config (or change some fields); a given seed restarts the RNG."""
        with self._lock:
            new = (config or replace(self._config, **changes)).validate()
            if config is not None or "seed" in changes:
                self._rng = random.Random(new.seed)
                self._disconnect_rng = random.Random(new.seed)
            self._config = new
            return new

    def latency_seconds(self) -> float:
        return self._config.latency_ms / 1000.0

    def draw_post_fault(self) -> PostFault | None:
        """The fault for one POST, or None to answer it normally."""
        config = self._config
        if not (config.throttle_rate or config.error_rate):
            return None
        with self._lock:
            r = self._rng.random()
        if r < config.throttle_rate:
            return PostFault.THROTTLE
        if r < config.throttle_rate + config.error_rate:
            return PostFault.ERROR
        return None

    def drop_disconnect(self) -> bool:
        """Whether this closed connection's ``$disconnect`` is lost (counted when it is)."""
        rate = self._config.drop_disconnect_rate
        if not rate:
            return False
        with self._lock:
            dropped = self._disconnect_rng.random() < rate
            self.dropped_disconnects += dropped
        return dropped
